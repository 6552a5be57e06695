"""Registers the opt-in `vllm` marker here, so pyproject's --strict-markers accepts it, and
holds the fixtures both vLLM modules share (the tiny models are built once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "vllm: runs a real vLLM server on tiny reward models (opt-in: set MAGICORE_VLLM_PYTHON "
        "to a Python with vllm; see docs/vllm.md)",
    )


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    path = os.environ.get("MAGICORE_VLLM_WORKDIR")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        return Path(path)
    return tmp_path_factory.mktemp("vllm")


@pytest.fixture(scope="session")
def tiny_models(workdir) -> dict:
    from vllm_servers import build_tiny_models

    return build_tiny_models(workdir / "models")
