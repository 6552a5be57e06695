"""The child side of the Python sandbox: drops privileges, builds the namespaces, runs the code.

`sandbox.py` runs this file's text as `python -I -S -c <text> CONFIG_FD STATUS_FD`, so it is
executed, never imported: standard library only, no magicore imports (the child may not even be
able to read the package once it has dropped privileges). Python 3.11 has no `os.unshare`,
`mount` or `pivot_root`, hence the few libc calls through ctypes.

Process tree when namespaces are available (all three end together):
  setup  (uid 65534 on the host if started as root; creates user/mount/net/pid/ipc/uts namespaces)
   └ init  (pid 1 of the new pid namespace: builds the read-only root, reaps, reports the status)
      └ program  (`python -I /sandbox/main.py`, no capabilities, rlimits set)
When `init` exits, the kernel kills every process left in its pid namespace, and `init` dies
with `setup` (PR_SET_PDEATHSIG). At the deadline the host sends SIGTERM to `setup`, which
SIGKILLs `init` and reaps it, so nothing is left, not even a zombie.
Any failure here is written as one "E <errno> <message>" line on STATUS_FD (errno 0 when it was
not an OSError; the host tells "this layer cannot work here" from "busy, try again" by it); the
program's wait status is written as "S <status>". Without namespaces, `setup` itself execs the
program.
"""

import _signal as signal  # not `signal`, whose import of enum costs milliseconds on every run
import ctypes
import marshal  # not json, which imports re: start-up time is paid on every run
import os
import resource
import select
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH, AT_FDCWD, AT_RECURSIVE = 2, -100, 0x8000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 38
SECCOMP_MODE_FILTER = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}.get(os.uname().machine)
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # same on every architecture
OPEN_TREE_CLONE, O_CLOEXEC, AT_EMPTY_PATH, MOVE_MOUNT_F_EMPTY_PATH = 1, 0o2000000, 0x1000, 4
DEVICES = ("null", "zero", "full", "random", "urandom")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _prctl(option, value):
    _check(libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _clone_readonly(path):
    """A detached, read-only copy of the mount tree at `path`, attached later with move_mount.
    Cloned while still privileged: Python often lives under /root (mode 700), which the
    unprivileged uid could not even traverse; a bind of an O_PATH fd would fail across the
    mount namespaces (EINVAL). Needs Linux 5.12; without it the probe drops the mount namespace."""
    fd = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(path), OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC)
    _check(min(fd, 0), f"open_tree {path}")
    attr = (ctypes.c_uint64 * 4)(MS_RDONLY | MS_NOSUID | MS_NODEV, 0, 0, 0)  # = MOUNT_ATTR_*
    _check(libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE,
                        ctypes.byref(attr), ctypes.sizeof(attr)), f"mount_setattr {path}")
    return path, fd


def _build_root(cfg, trees):
    """Mount a fresh tmpfs root holding only read-only system and Python directories and a
    made-up /etc (`cfg["etc"]`, see sandbox._etc_view), then pivot into it: the caller's home, the
    project, the host's /etc, /run, /var, other users' files are absent."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = "/tmp"  # any directory would do: the mounts below exist in this namespace only
    size = len(cfg["source"]) * 4 + sum(len(value) for _, _, value in cfg["etc"]) + (1 << 20)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,size={size}")
    os.makedirs(root + "/tmp")  # the program's working directory; first, in case Python is in /tmp
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=0700,size={cfg['workdir_mb']}m,nr_inodes=4096")
    for path, fd in trees:
        os.makedirs(root + path, exist_ok=True)
        _check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, os.fsencode(root + path),
                            MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {path}")
    for path in cfg.get("hidden", ()):  # answer keys (sandbox.ANSWER_PACKAGES): shown empty
        if os.path.isdir(root + path):
            _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "mode=0555,size=4k")
    for link, target in cfg["symlinks"]:
        os.symlink(target, root + link)
    os.mkdir(root + "/etc", 0o755)
    for name, kind, value in cfg["etc"]:
        if kind == "link":
            os.symlink(value, f"{root}/etc/{name}")
            continue
        with open(f"{root}/etc/{name}", "xb") as f:
            os.fchmod(f.fileno(), 0o644)  # whatever the umask; the root is read-only once built
            f.write(value)
    os.makedirs(root + "/dev")
    os.makedirs(root + "/dev/shm")  # POSIX shared memory (shm_open, multiprocessing), bounded
    _mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           f"mode=1777,size={cfg['shm_mb']}m,nr_inodes=256")
    for name in DEVICES:
        open(f"{root}/dev/{name}", "w").close()
        _mount(f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    for name, target in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]:
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(root + "/proc")
    try:  # refused in containers that mask parts of their /proc; Python runs without it
        _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass
    os.makedirs(root + "/sandbox")
    _write(root + "/sandbox/main.py", cfg["source"])
    os.chdir(root)
    _check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


class _SockFprog(ctypes.Structure):  # struct sock_fprog: the BPF program prctl loads
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load_seccomp(bpf):
    """Install the host's compiled seccomp filter (tools/_sandbox_seccomp.py); needs no_new_privs."""
    code = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(code, ctypes.c_void_p))
    _check(libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0), "seccomp")


def _exec_program(cfg):
    """Last step in every mode: limits, no way to regain privileges, then the interpreter."""
    for name, soft, hard in cfg["rlimits"]:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if cfg["seccomp"]:
        _load_seccomp(cfg["seccomp"])
    os.chdir(cfg["cwd"])
    os.execve(cfg["python"], [cfg["python"], "-I", "-B", cfg["script"]], cfg["env"])


def _init(cfg, trees, status_fd, parent_alive_fd):
    """pid 1 of the new pid namespace. Its exit ends every process the program left behind."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as pid 1, ignored: the program can't end us
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if select.select([parent_alive_fd], [], [], 0)[0]:  # EOF: `setup` died before the line above
        os._exit(1)
    if cfg["mountns"]:
        _build_root(cfg, trees)
    for _, fd in trees:
        os.close(fd)
    _prctl(PR_SET_DUMPABLE, 0)  # the program runs as the same uid: keep it from ptracing init
    child = os.fork()  # the program's exec makes it dumpable again, which is harmless
    if child == 0:
        os.setsid()  # its own process group: killing "its group" must not reach setup and init
        _run_step("exec", status_fd, _exec_program, cfg)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            os.write(status_fd, f"S {status}\n".encode())
            os._exit(0)


def _setup(cfg, status_fd):
    init = []

    def stop(signum, frame):  # the host's way to end a run: SIGKILL init, then reap it below
        if not init:
            os._exit(1)
        os.kill(init[0], signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    clone_now = cfg["mountns"] and os.geteuid() == 0  # else after unshare, with namespace caps
    trees = [_clone_readonly(p) for p in cfg["binds"]] if clone_now else []
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
        _prctl(PR_SET_DUMPABLE, 1)  # lost with setuid; needed to write our own uid_map
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change
    if os.getppid() != cfg["host_pid"]:
        os._exit(1)
    if not cfg["userns"]:
        _exec_program(cfg)
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    _check(libc.unshare(flags | (CLONE_NEWNS if cfg["mountns"] else 0)), "unshare")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    name = cfg["hostname"].encode()  # the new UTS namespace starts with the host's name
    _check(libc.sethostname(name, len(name)), "sethostname")
    # Nested user namespaces are the usual door to kernel attack surface; the limit is
    # per namespace and checked up the chain, so the program cannot create any.
    _write("/proc/sys/user/max_user_namespaces", "0")
    if cfg["mountns"] and not clone_now:
        trees = [_clone_readonly(p) for p in cfg["binds"]]
    alive_r, alive_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(alive_w)
        _run_step("init", status_fd, _init, cfg, trees, status_fd, alive_r)
    init.append(child)
    os.close(alive_r)
    for _, fd in trees:
        os.close(fd)
    _, status = os.waitpid(child, 0)
    os._exit(0 if status == 0 else 1)


def _run_step(stage, status_fd, func, *args):
    try:
        func(*args)
    except BaseException as exc:  # report anything, including SystemExit, as a set-up failure
        message = f"{stage}: {exc}".replace("\n", " ")[:1000]
        number = exc.errno if isinstance(exc, OSError) and exc.errno else 0
        os.write(status_fd, f"E {number} {message}\n".encode())
        os._exit(127)
    os._exit(0)


if __name__ == "__main__":
    config_fd, status = int(sys.argv[1]), int(sys.argv[2])
    os.set_inheritable(status, False)  # the program must not inherit the status channel
    with os.fdopen(config_fd, "rb") as f:
        config = marshal.load(f)
    _run_step("setup", status, _setup, config, status)
