"""How the sandbox chooses its layers: the probe's decision logic with made-up outcomes (no
sandbox runs, no sleeping), how a trial run's outcome is classified, and the child's report of
a layer it could not build."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from magicore.tools import _sandbox_probe as probe
from magicore.tools import sandbox
from magicore.tools.errors import SetupError
from magicore.tools.sandbox import ExecutionResult, Mode, sandbox_capabilities

CAPS = sandbox_capabilities()
ROOT = os.geteuid() == 0
DROP = probe.NOBODY if ROOT else None  # as root every mode drops to nobody; else the caller's uid


def fake_trial(outcomes: dict[Mode, list[BaseException | None]], tried: list[Mode]):
    """A trial that replays, per mode, a list of outcomes (None = worked); the last one repeats."""
    def trial(mode: Mode) -> None:
        tried.append(mode)
        queue = outcomes.get(mode, [None])
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if outcome is not None:
            raise outcome
    return trial


@pytest.mark.parametrize("root", [False, True])
def test_probe_picks_the_strongest_mode_and_warns_about_what_is_missing(caplog, root):
    uid = probe.NOBODY if root else None
    full, no_mount = Mode(uid, True, True), Mode(uid, True, False)
    tried: list[Mode] = []
    trial = fake_trial({full: [probe.Unsupported("open_tree: Function not implemented")]}, tried)
    with caplog.at_level(logging.WARNING, logger="magicore.sandbox"):
        assert probe.select_mode(root, trial, sleep=lambda s: None) == no_mount
    assert tried == [full, no_mount]
    [record] = caplog.records
    assert record.name == "magicore.sandbox" and record.levelno == logging.WARNING
    message = record.getMessage()
    assert "Missing: mount-namespace." in message and "open_tree" in message
    assert "Active: " + ", ".join(no_mount.protections) in message

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="magicore.sandbox"):
        assert probe.select_mode(root, fake_trial({}, []), sleep=lambda s: None) == full
    assert not caplog.records  # everything active: nothing to say


def test_probe_retries_transient_failures_instead_of_downgrading():
    full = probe.candidate_modes(ROOT)[0]
    tried, pauses = [], []
    busy = [probe.Transient("took longer than 10 s"), probe.Transient("EAGAIN"), None]
    assert probe.select_mode(ROOT, fake_trial({full: busy}, tried), sleep=pauses.append) == full
    assert tried == [full] * 3 and pauses == list(probe.PROBE_BACKOFF_S)

    tried.clear()
    always_busy = fake_trial({full: [probe.Transient("took longer than 10 s")]}, tried)
    with pytest.raises(SetupError, match="overloaded"):
        probe.select_mode(ROOT, always_busy, sleep=lambda s: None)
    assert tried == [full] * probe.PROBE_ATTEMPTS  # no weaker mode was tried


def test_probe_as_root_refuses_when_not_even_the_uid_drop_works():
    tried: list[Mode] = []
    never = fake_trial({m: [probe.Unsupported("setresuid: Operation not permitted")]
                        for m in probe.candidate_modes(True)}, tried)
    with pytest.raises(SetupError, match="Refusing to run model-written code as root"):
        probe.select_mode(True, never, sleep=lambda s: None)
    assert tried == probe.candidate_modes(True) and all(m.uid == probe.NOBODY for m in tried)
    with pytest.raises(SetupError, match="cannot start on this machine"):  # not root: just fails
        probe.select_mode(False, fake_trial({m: [probe.Unsupported("no")] for m in
                                                probe.candidate_modes(False)}, []), sleep=lambda s: None)


def test_a_failed_probe_is_not_kept(monkeypatch):
    answers = [SetupError("busy"), Mode(DROP, True, False)]

    def select(root: bool, trial) -> Mode:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(sandbox, "_mode_cache", [])
    monkeypatch.setattr(sandbox, "select_mode", select)
    with pytest.raises(SetupError):
        sandbox._probe_mode()
    assert sandbox._probe_mode() == sandbox._probe_mode() == Mode(DROP, True, False)  # probed once more


def result(**changes) -> ExecutionResult:
    fields = {"stdout": "ok\n", "stderr": "", "exit_code": 0, "signal": None, "timed_out": False,
              "output_limit_hit": False, "stdout_truncated": False, "stderr_truncated": False,
              "duration_s": 0.1, "protections": (), "timeout": 10.0, "memory_mb": 256}
    return ExecutionResult(**{**fields, **changes})


@pytest.mark.parametrize("outcome, expected", [
    (result(), None),
    (sandbox._ChildSetupError("unshare: Operation not permitted", errno.EPERM), probe.Unsupported),
    (sandbox._ChildSetupError("open_tree: Function not implemented", errno.ENOSYS), probe.Unsupported),
    (sandbox._ChildSetupError("init: fork: Resource temporarily unavailable", errno.EAGAIN),
     probe.Transient),
    (sandbox._ChildSetupError("clone: Cannot allocate memory", errno.ENOMEM), probe.Transient),
    (OSError(errno.EAGAIN, "fork"), probe.Transient),
    (OSError(errno.ENOSYS, "pidfd_open"), SetupError),
    (result(stdout="", exit_code=None, signal="SIGKILL", timed_out=True), probe.Transient),
    (result(stdout="", exit_code=None, signal="SIGKILL"), probe.Transient),
    (result(stdout="", exit_code=127, stderr="error while loading shared libraries"), probe.Unsupported),
], ids=["works", "eperm", "enosys", "eagain", "enomem", "host-eagain", "host-enosys", "timeout", "killed",
        "python-cannot-start"])
def test_probe_outcomes_are_classified(monkeypatch, outcome, expected):
    def execute(*args):
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(sandbox, "_execute", execute)
    if expected is None:
        sandbox._try_mode(Mode(DROP, True, True))
    else:
        with pytest.raises(expected) as caught:
            sandbox._try_mode(Mode(DROP, True, True))
        assert type(caught.value) is not SetupError or expected is SetupError


def test_enospc_is_transient_unless_a_namespace_limit_is_zero(monkeypatch):
    limits = {kind: "1000\n" for kind in probe.NAMESPACE_LIMITS}
    real_read = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: limits[self.name[4:-11]]
                        if self.name.startswith("max_") else real_read(self, *a, **k))
    assert probe.is_transient(errno.ENOSPC)
    limits["user"] = "0\n"  # user namespaces turned off: ENOSPC will never pass
    assert not probe.is_transient(errno.ENOSPC)


@pytest.mark.skipif("mount-namespace" not in CAPS, reason="no mount namespace here")
def test_child_reports_the_errno_of_a_failed_layer(monkeypatch):
    binds, links = sandbox._layout()
    monkeypatch.setattr(sandbox, "_layout", lambda: (binds + ["/nonexistent-magicore"], links))
    with pytest.raises(sandbox._ChildSetupError) as caught:
        sandbox._execute(Mode(DROP, True, True), "print('ok')", 10.0, 256, 1000, 4, None)
    assert caught.value.errno == errno.ENOENT and "open_tree /nonexistent-magicore" in str(caught.value)
    with pytest.raises(probe.Unsupported):
        sandbox._try_mode(Mode(DROP, True, True))
