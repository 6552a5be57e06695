"""Registers the opt-in `vllm` marker here, so pyproject's --strict-markers accepts it."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "vllm: runs a real vLLM server on tiny reward models (opt-in: set MAGICORE_VLLM_PYTHON "
        "to a Python with vllm; see docs/vllm.md)",
    )
