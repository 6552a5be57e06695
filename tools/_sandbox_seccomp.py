"""The sandbox's seccomp filter: system calls a program may not make, as a BPF program.

libseccomp (through pyseccomp, its ctypes bindings) compiles the rules for this machine's
architecture, so no hand-written BPF; the sandbox's child side only loads the bytes with
prctl(PR_SET_SECCOMP). Each refused call fails with EPERM, as if the kernel lacked it:
- memfd_create: anonymous files hold memory outside RLIMIT_AS (600 MB at memory_mb=64);
- shmget: System V segments outlive their mapping, the same memory outside the limit;
- io_uring_setup/enter/register: a large kernel surface, and I/O that bypasses other checks;
- keyctl, add_key, request_key: the kernel keyring, shared beyond the sandbox;
- prlimit64 on another process: the program could change its init's limits and so the exit
  code the host reads (setrlimit on itself is prlimit64 with pid 0, still allowed).
None when libseccomp is missing: the sandbox runs without this layer and says so.
"""

from __future__ import annotations

import errno
import logging
import os
from functools import lru_cache

log = logging.getLogger("magicore.sandbox")

REFUSED = ("memfd_create", "shmget", "io_uring_setup", "io_uring_enter", "io_uring_register",
           "keyctl", "add_key", "request_key")  # fmt: skip


@lru_cache(maxsize=1)
def seccomp_filter() -> bytes | None:
    """The filter as BPF instructions (8 bytes each), or None where libseccomp is unavailable."""
    try:
        import pyseccomp as seccomp

        rules = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in REFUSED:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "prlimit64", seccomp.Arg(0, seccomp.NE, 0))
        fd = os.memfd_create("magicore-seccomp")  # the host's own process: not filtered
        with open(fd, "w+b") as f:
            rules.export_bpf(f)
            f.seek(0)
            return f.read()
    except Exception as error:  # ImportError, OSError (no libseccomp.so.2), RuntimeError from it
        log.warning("sandbox: no seccomp filter (%s); memfd_create and the others stay allowed", error)
        return None
