"""The installed package: one `magicore` namespace, nothing under generic top-level names."""

import subprocess
import sys


def run(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_subpackages_live_under_magicore_only(tmp_path):
    ok = run("import magicore.agents, magicore.tools, magicore.graphs, magicore.ui, magicore.evals; print('ok')",
             tmp_path)
    assert ok.stdout.strip() == "ok", ok.stderr
    for generic in ("tools", "ui", "agents", "graphs", "evals"):
        proc = run(f"import {generic}", tmp_path)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, generic


def test_prompts_ship_as_package_data(tmp_path):
    proc = run("from importlib import resources; print(sorted(p.name for p in "
               "resources.files('magicore.agents').joinpath('prompts').iterdir() if p.name.endswith('.yaml')))",
               tmp_path)
    assert proc.stdout.strip() == "['refiner.yaml', 'reviewer.yaml', 'self_refine.yaml', 'solver.yaml']", proc.stderr
