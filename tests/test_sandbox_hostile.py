"""Hostile programs in the sandbox (the real one, as this machine allows it): memory held outside
the address-space limit (memfd, System V and POSIX shared memory), refused kernel surfaces
(io_uring, the keyring), a program that kills its own process group, one that changes its init's
limits. Each is contained, and the host is left as it was: no zombie, no stray process."""

from __future__ import annotations

import os
import time

import pytest

from magicore.tools._sandbox_seccomp import seccomp_filter
from magicore.tools.sandbox import run_python, sandbox_capabilities

CAPS = sandbox_capabilities()
needs_seccomp = pytest.mark.skipif(seccomp_filter() is None, reason="libseccomp (libseccomp2) is not installed")
needs_pidns = pytest.mark.skipif("pid-namespace" not in CAPS, reason="no pid namespace here")
needs_mountns = pytest.mark.skipif("mount-namespace" not in CAPS, reason="no mount namespace here")


def _zombies_since(start: float) -> list[str]:
    """Zombie processes whose parent is this process or pid 1, started after `start` (monotonic
    seconds, compared with the boot-relative start times in /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid, started = fields[0], int(fields[1]), int(fields[19]) / ticks
        if state == "Z" and ppid in (1, os.getpid()) and started >= start - 0.5:
            found.append(pid)
    return found


def _boot_seconds() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


@needs_seccomp
def test_memfd_cannot_hold_memory_past_the_limit():
    program = ("import os\nheld = []\nfor i in range(40):\n    fd = os.memfd_create(f'm{i}')\n"
               "    os.write(fd, b'x' * (15 << 20))\n    held.append(fd)\nprint('held', 15 * len(held), 'MB')\n")
    res = run_python(program, memory_mb=64, timeout=20)
    assert "held" not in res.stdout and res.exit_code == 1
    assert "PermissionError" in res.stderr and "Operation not permitted" in res.stderr
    assert "seccomp" in res.protections


@needs_seccomp
@pytest.mark.parametrize(("call", "what"), [
    ("ctypes.CDLL(None, use_errno=True).syscall(425, 8, ctypes.create_string_buffer(120))", "io_uring_setup"),
    ("ctypes.CDLL(None, use_errno=True).syscall(250, 0, 0, 0, 0, 0)", "keyctl"),
    ("ctypes.CDLL(None, use_errno=True).syscall(248, b'user', b'k', b'v', 1, -2)", "add_key"),
    ("ctypes.CDLL(None, use_errno=True).syscall(29, 0, 64 << 20, 0o1600)", "shmget"),
])  # fmt: skip
def test_refused_system_calls_fail_with_eperm(call, what):
    if os.uname().machine != "x86_64":
        pytest.skip("the syscall numbers here are x86_64's")
    res = run_python(f"import ctypes\nr = {call}\nprint(r, ctypes.get_errno())\n")
    assert res.exit_code == 0 and res.stdout.split() == ["-1", "1"], (what, res.stdout, res.stderr)  # EPERM


@needs_mountns
def test_posix_shared_memory_is_a_small_bounded_tmpfs():
    program = ("written = 0\ntry:\n    for i in range(16):\n        with open(f'/dev/shm/part{i}', 'wb') as f:\n"
               "            f.write(b'x' * (4 << 20))\n        written += 4\nexcept OSError as e:\n"
               "    print('stopped after', written, 'MB, errno', e.errno)\n")  # fmt: skip
    res = run_python(program, memory_mb=64)
    assert res.exit_code == 0 and res.stdout == "stopped after 16 MB, errno 28\n", res.stdout + res.stderr  # 16 MB: ENOSPC


@needs_pidns
def test_a_program_that_kills_its_own_process_group_leaves_no_zombie():
    start = _boot_seconds()
    res = run_python("import os, signal\nprint('bye', flush=True)\nos.killpg(0, signal.SIGKILL)\n")
    assert res.stdout == "bye\n" and res.signal == "SIGKILL" and res.exit_code is None
    time.sleep(0.3)
    assert _zombies_since(start) == []
    again = run_python("print('still fine')")
    assert again.ok and again.stdout == "still fine\n"


@needs_seccomp
@needs_pidns
def test_a_program_cannot_change_its_inits_limits():
    program = ("import resource, sys\ntry:\n    resource.prlimit(1, resource.RLIMIT_NOFILE, (3, 3))\n"
               "except PermissionError:\n    print('refused')\nresource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
               "sys.exit(7)\n")  # fmt: skip
    res = run_python(program)
    assert res.stdout == "refused\n" and res.exit_code == 7  # its own limits it may still lower
