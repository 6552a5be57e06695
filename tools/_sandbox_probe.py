"""Which sandbox layers work on this machine: the modes to try, strongest first, and the rule
for giving one up (a layer that cannot be built) versus trying again (a machine that is busy).

tools/sandbox.py runs the trial program and keeps the chosen mode for the process.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from magicore.tools.errors import SetupError

NOBODY = 65534
ALWAYS = ("rlimits", "no-new-privs", "empty-env", "temp-dir", "isolated-mode")
NAMESPACES = ("user-namespace", "network-namespace", "pid-namespace", "ipc-namespace")
PROBE_TIMEOUT_S = 10.0  # for the probe's tiny program; a timeout is retried, never a downgrade
PROBE_ATTEMPTS = 3  # tries per mode when the failure may pass (timeout, EAGAIN, ENOMEM...)
PROBE_BACKOFF_S = (0.5, 2.0)  # pause before the 2nd and 3rd tries
# errno values that say "the machine is busy", not "this layer cannot work here"
TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.ENOMEM, errno.EINTR, errno.EMFILE, errno.ENFILE,
                              errno.EBUSY})
NAMESPACE_LIMITS = ("user", "net", "pid", "ipc", "uts", "mnt")  # /proc/sys/user/max_*_namespaces

log = logging.getLogger("magicore.sandbox")


@dataclass(frozen=True)
class Mode:
    """Which layers to build; chosen once per process by probing (see `select_mode`)."""

    uid: int | None  # drop to this uid (only when running as root)
    userns: bool  # user + network + pid + ipc + uts namespaces
    mountns: bool  # private read-only root with only the system and Python directories

    @property
    def protections(self) -> tuple[str, ...]:
        layers = NAMESPACES if self.userns else ()
        layers += ("mount-namespace",) if self.mountns else ()
        layers += ("unprivileged-uid",) if self.uid is not None else ()
        return layers + ALWAYS


class Unsupported(Exception):
    """A layer cannot work on this machine: the probe moves on to a weaker mode."""


class Transient(Exception):
    """The probe's run failed for a reason that may pass (load, a full process table): try again."""


def candidate_modes(root: bool) -> list[Mode]:
    """Strongest first. As root, every mode drops to NOBODY: model code never runs as root."""
    uid = NOBODY if root else None
    return [Mode(uid, True, True), Mode(uid, True, False), Mode(uid, False, False)]


def select_mode(root: bool, trial: Callable[[Mode], None], sleep: Callable[[float], None] = time.sleep) -> Mode:
    """Try each mode, strongest first, with a tiny program (`trial`: returns when the mode works,
    raises Unsupported or Transient when it does not; sandbox.py's is `_try_mode`).

    A mode is given up only when a layer really cannot be set up (`Unsupported`). A failure that
    may pass (`Transient`: a timeout under load, EAGAIN on fork) is retried PROBE_ATTEMPTS times
    and then raised as SetupError rather than taken as a reason to run with fewer layers. Any
    mode weaker than the strongest is logged as a warning naming what is active and what is not.
    Running as root, when not even the drop to an unprivileged uid works: SetupError."""
    candidates = candidate_modes(root)
    dropped: list[str] = []
    for mode in candidates:
        for attempt in range(1, PROBE_ATTEMPTS + 1):
            try:
                trial(mode)
            except Unsupported as exc:
                dropped.append(f"with {layers(mode)}: {exc}")
                break
            except Transient as exc:
                if attempt == PROBE_ATTEMPTS:
                    raise SetupError(
                        f"The Python sandbox could not be checked on this machine ({exc}; "
                        f"{attempt} tries with {layers(mode)}). It is probably overloaded; "
                        "try again later.") from None
                log.info("Python sandbox probe with %s failed (%s); trying again", layers(mode), exc)
                sleep(PROBE_BACKOFF_S[min(attempt, len(PROBE_BACKOFF_S)) - 1])
            else:
                if mode != candidates[0]:
                    missing = [p for p in candidates[0].protections if p not in mode.protections]
                    log.warning("Python sandbox: weaker protection on this machine. Missing: %s. "
                                "Active: %s. Why: %s", ", ".join(missing), ", ".join(mode.protections),
                                "; ".join(dropped))
                return mode
    if root:
        raise SetupError("Refusing to run model-written code as root: the Python sandbox could not even "
                         f"switch it to an unprivileged uid ({'; '.join(dropped)}). Run magicore as an "
                         "ordinary user, or where user namespaces or setuid are allowed.")
    raise SetupError(f"The Python sandbox cannot start on this machine ({'; '.join(dropped)}).")


def layers(mode: Mode) -> str:
    return ", ".join(p for p in mode.protections if p not in ALWAYS) or "no namespaces"


def is_transient(number: int) -> bool:
    """ENOSPC from unshare is a full namespace table (passes) unless a limit is 0 (it never will)."""
    if number == errno.ENOSPC:
        for kind in NAMESPACE_LIMITS:
            try:
                if Path(f"/proc/sys/user/max_{kind}_namespaces").read_text().strip() == "0":
                    return False
            except OSError:
                pass
        return True
    return number in TRANSIENT_ERRNOS
