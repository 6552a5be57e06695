"""`magicore bench --engine ray` on a local Ray instance against a real HTTP mock server:
both engines write the same records for the same problems; a worker killed mid-run has its
problems completed once; a rerun resumes; the CLI. The workers are real Ray actor processes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import threading

import pytest

import ray

from magicore.agents.backends import chat_model, parse_spec
from magicore.agents.fake import role_of
from magicore.evals.bench import BenchSettings, Models, load_results, run_bench
from magicore.evals.bench_ray import WORKER_PREFIX, run_bench_ray
from magicore.evals.datasets import Problem
from magicore.evals.mock_server import MockServer, MockSettings
from magicore.evals.ray_worker import WorkerSpecs
from magicore.ui.cli import main

PROBLEMS = [Problem(id=f"q{i}", question=f"Ann has {i} pens and gets {10 + i} more. How many pens?",
                    answer=str(10 + 2 * i), dataset="t") for i in range(8)]  # fmt: skip
TIMING = ("seconds", "finished_at")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


class Replies:
    """A reply that depends only on the request and the choice's place in it, so any engine,
    any worker and any order get the same text: a sum, right or one off, by a stable hash.
    The Solver gets every sum wrong for every third question (its chains disagree and score
    low: routed hard); the Refiner, and the Solver elsewhere, one in three."""

    def __init__(self):
        self.last, self.index = None, 0

    def __call__(self, body: dict, _counter: int) -> str:
        if body is self.last:  # the n choices of one request are made one after another
            self.index += 1
        else:
            self.last, self.index = body, 0
        prompt = json.dumps(body.get("messages"), sort_keys=True)
        digest = hashlib.sha256(f"{prompt}|{self.index}".encode()).digest()
        a, b = 3 + digest[0] % 7, 10 + digest[1] % 9
        solver = role_of(str(body["messages"][0].get("content"))) == "solver"
        always_wrong = solver and any(f"Ann has {i} pens" in prompt for i in (0, 3, 6))
        total = a + b + (always_wrong or digest[2] % 3 == 0)
        return f"Step 1: {a} + {b} = {total}\nStep 2: So the answer is {total}.\nThe answer is \\boxed{{{total}}}."


def settings(methods, **kw) -> BenchSettings:
    base = dict(dataset="t", methods=list(methods), k=4, rounds=2, model="mock", reward="verifier", concurrency=3)
    return BenchSettings(**{**base, **kw})


def specs_for(server) -> WorkerSpecs:
    return WorkerSpecs(model=f"vllm:mock-model@{server.base_url}", reward="verifier", timeout=30)


def models_for(server) -> Models:
    return Models(chat_model(parse_spec(f"vllm:mock-model@{server.base_url}"), timeout=30), reward="verifier")


def without_timing(records: dict) -> dict:
    return {i: {k: v for k, v in r.items() if k not in TIMING} for i, r in records.items()}


def test_both_engines_write_the_same_records_and_calibration(tmp_path, local_ray):
    methods = ["magicore", "sc", "bok"]
    with MockServer(MockSettings(latency=0.02, reply=Replies())) as server:
        local = asyncio.run(run_bench(PROBLEMS, settings(methods), models_for(server), tmp_path / "local",
                                      progress=False, log=lambda _t: None))  # fmt: skip
        logs: list[str] = []
        distributed = asyncio.run(run_bench_ray(PROBLEMS, settings(methods), models_for(server), specs_for(server),
                                                tmp_path / "ray", workers=2, progress=False, log=logs.append))  # fmt: skip
    assert any("ray: 2 worker(s)" in line for line in logs)
    for method in methods:
        assert sorted(distributed[method]) == [p.id for p in PROBLEMS]
        assert without_timing(distributed[method]) == without_timing(local[method]), method
    mg = local["magicore"].values()
    assert all(r["error"] is None for r in mg)
    assert any(r["hard"] and r["rounds"] >= 1 for r in mg) and any(r["hard"] is False for r in mg)  # both routes taken
    cal = [json.loads((tmp_path / d / "calibration.json").read_text()) for d in ("local", "ray")]
    assert cal[0] == cal[1] and cal[0]["n"] == len(PROBLEMS)
    firsts = [(tmp_path / d / "calibration_chains.jsonl").read_text().splitlines() for d in ("local", "ray")]
    strip = [sorted(json.dumps({k: v for k, v in json.loads(line).items() if k != "seconds"}) for line in f)
             for f in firsts]  # fmt: skip
    assert strip[0] == strip[1]


def test_a_worker_killed_mid_run_has_its_problems_completed_once(tmp_path, local_ray):
    killed = threading.Event()
    replies = Replies()

    def reply(body, counter):
        if counter == 6 * 4 - 1 and not killed.is_set():  # the sixth request (k = 4): three in flight on each worker
            killed.set()
            threading.Thread(target=_kill_worker, args=(0,), daemon=True).start()
        return replies(body, counter)

    logs: list[str] = []
    with MockServer(MockSettings(latency=0.3, reply=reply)) as server:
        records = asyncio.run(run_bench_ray(PROBLEMS, settings(["sc"]), models_for(server), specs_for(server),
                                            tmp_path, workers=2, progress=False, log=logs.append))["sc"]  # fmt: skip
        requests = len(server.settings.requests)
    assert killed.is_set()
    died = [line for line in logs if line.startswith("ray: worker 0 died with")]
    assert len(died) == 1, logs
    lines = [json.loads(line) for line in (tmp_path / "sc.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(p.id for p in PROBLEMS)  # each problem once
    assert all(r["error"] is None and r["answer"] for r in lines)
    lost = int(died[0].split(" with ")[1].split()[0])
    # the killed worker's problems were asked again elsewhere; those it had not finished, no more
    assert lost >= 1 and len(PROBLEMS) < requests <= len(PROBLEMS) + lost
    assert sorted(records) == sorted(p.id for p in PROBLEMS)


def _kill_worker(slot: int) -> None:
    actor = ray.get_actor(f"{WORKER_PREFIX}-{slot}")
    os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)


def test_a_rerun_resumes_and_counts_no_problem_twice(tmp_path, local_ray):
    with MockServer(MockSettings(latency=0.0, reply=Replies())) as server:
        first = asyncio.run(run_bench_ray(PROBLEMS, settings(["sc", "magicore"]), models_for(server),
                                          specs_for(server), tmp_path, workers=2, progress=False, log=lambda _t: None))  # fmt: skip
        lines = (tmp_path / "sc.jsonl").read_text().splitlines()
        (tmp_path / "sc.jsonl").write_text("\n".join(lines[:5]) + "\n")  # as if stopped after five
        asked = len(server.settings.requests)
        again = asyncio.run(run_bench_ray(PROBLEMS, settings(["sc", "magicore"]), models_for(server),
                                          specs_for(server), tmp_path, workers=2, progress=False, log=lambda _t: None))  # fmt: skip
        assert len(server.settings.requests) - asked == 3  # one n=k request for each of the three missing
    for method in ("sc", "magicore"):
        ids = [json.loads(line)["id"] for line in (tmp_path / f"{method}.jsonl").read_text().splitlines()]
        assert sorted(ids) == sorted(p.id for p in PROBLEMS), method
        assert without_timing(again[method]) == without_timing(first[method])


def test_cli_bench_engine_ray(tmp_path, local_ray, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"ID": f"chal-{i}", "Body": f"Tom has {i} apples and buys {42 - i} more.", "Question": "How many?",
             "Equation": f"( {i} + {42 - i} )", "Answer": 42.0 if i % 2 else 41.0, "Type": "Addition"}
            for i in range(1, 6)]  # fmt: skip
    (data / "svamp.json").write_text(json.dumps(rows))
    with MockServer(MockSettings()) as server:  # every reply answers 42
        args = ["bench", "--dataset", "svamp", "--data", str(data), "--limit", "5", "--methods", "sc,magicore",
                "-k", "3", "--model", f"mock@{server.base_url}", "--reward", "const:0.5", "--out", str(tmp_path / "o"),
                "--no-progress", "--no-plot", "--engine", "ray", "--workers", "2"]  # fmt: skip
        assert main(args) == 0
    printed = capsys.readouterr()
    assert "| sc | 5 | 60.0% (3/5) |" in printed.out and "| magicore | 5 | 60.0% (3/5) |" in printed.out
    assert "ray: 2 worker(s)" in printed.err


def test_ray_options_without_the_ray_engine_are_a_usage_error(tmp_path, capsys):
    assert main(["bench", "--out", str(tmp_path), "--workers", "2"]) == 1
    assert "--address and --workers apply to --engine ray only" in capsys.readouterr().err


def test_an_unreachable_ray_address_is_one_sentence(tmp_path, capsys):
    from tests.test_replicas import free_port

    data = tmp_path / "data"
    data.mkdir()
    (data / "svamp.json").write_text(json.dumps([{"ID": "c1", "Body": "Tom has 1 apple.", "Question": "How many?",
                                                  "Equation": "( 1 )", "Answer": 1.0, "Type": "Addition"}]))  # fmt: skip
    with MockServer(MockSettings()) as server:
        code = main(["bench", "--dataset", "svamp", "--data", str(data), "--methods", "sc", "--model",
                     f"mock@{server.base_url}", "--out", str(tmp_path / "o"), "--engine", "ray",
                     "--address", f"127.0.0.1:{free_port()}"])  # fmt: skip
    assert code == 1
    assert capsys.readouterr().err.strip().startswith("magicore: error: cannot reach the Ray cluster at 127.0.0.1:")


@pytest.mark.parametrize("first_engine", ["local", "ray"])
def test_a_run_begun_on_one_engine_is_finished_on_the_other(tmp_path, local_ray, first_engine):
    """MAgICoRe's store (records, calibration, checkpoints.sqlite) is the same for both engines:
    cut three records and the other engine redoes only those, with the same calibration."""

    def run(engine, server):
        s = settings(["magicore"])
        if engine == "local":
            return asyncio.run(run_bench(PROBLEMS, s, models_for(server), tmp_path, progress=False,
                                         log=lambda _t: None))["magicore"]  # fmt: skip
        return asyncio.run(run_bench_ray(PROBLEMS, s, models_for(server), specs_for(server), tmp_path, workers=2,
                                         progress=False, log=lambda _t: None))["magicore"]  # fmt: skip

    with MockServer(MockSettings(reply=Replies())) as server:
        first = run(first_engine, server)
        calibration = (tmp_path / "calibration.json").read_text()
        lines = (tmp_path / "magicore.jsonl").read_text().splitlines()
        kept = lines[:-3]
        (tmp_path / "magicore.jsonl").write_text("\n".join(kept) + "\n")
        asked = len(server.settings.requests)
        second = run("ray" if first_engine == "local" else "local", server)
        again = len(server.settings.requests) - asked
    ids = [json.loads(line)["id"] for line in (tmp_path / "magicore.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(p.id for p in PROBLEMS)  # each once
    assert (tmp_path / "calibration.json").read_text() == calibration
    assert without_timing(second) == without_timing(first)
    cut = [json.loads(line) for line in lines[-3:]]
    if first_engine == "local":  # the local engine's threads ran to the end: nothing to ask again
        assert again == 0
    else:  # the Ray engine saves states paused before "route": only phase 2 runs again
        assert again == sum(r["requests"] for r in cut) - 3  # all but the one n=k sampling request each
