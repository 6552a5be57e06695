"""`magicore bench --engine ray` on a local Ray instance against a real HTTP mock server:
both engines write the same records for the same paired configurations (the chains sampled
once on the workers, replayed by every configuration); a worker killed mid-run has its
problems completed once; a rerun resumes, on either engine; the CLI. The workers are real Ray
actor processes."""

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
COMPARED = ("answer", "correct", "hard", "rounds", "calibration", "votes", "llm_calls", "requests", "input_tokens",
            "output_tokens", "config", "method", "k", "error")  # fmt: skip


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


class Replies:
    """A reply that depends only on the request (its seed included: the chains of a problem
    are sampled one request each) and the choice's place in it, so any engine, any worker and
    any order get the same text: a sum, right or one off, by a stable hash.
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
        digest = hashlib.sha256(f"{prompt}|{body.get('seed')}|{self.index}".encode()).digest()
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


def calls(bodies: list[dict]) -> int:
    """The model calls in the requests a server received: a batch (vLLM's /chat/completions/batch,
    agents/coalesce.py) carries one per conversation."""
    return sum(len(b["messages"]) if b["messages"] and isinstance(b["messages"][0], list) else 1 for b in bodies)


def outcome(records: dict) -> dict:
    """What both engines must agree on for each problem: the outcome, the cost and the chains."""
    return {i: {**{k: r[k] for k in COMPARED}, "chains": [c["text"] for c in r["chains"]]}
            for i, r in records.items()}  # fmt: skip


def test_both_engines_write_the_same_records_and_calibration(tmp_path, local_ray):
    methods = ["magicore@4", "magicore-all@2", "sc@4", "bok@2", "self-refine@2"]
    with MockServer(MockSettings(latency=0.02, reply=Replies())) as server:
        local = asyncio.run(run_bench(PROBLEMS, settings(methods), models_for(server), tmp_path / "local",
                                      progress=False, log=lambda _t: None))  # fmt: skip
        logs: list[str] = []
        distributed = asyncio.run(run_bench_ray(PROBLEMS, settings(methods), models_for(server), specs_for(server),
                                                tmp_path / "ray", workers=2, progress=False, log=logs.append))  # fmt: skip
    assert any("ray: 2 worker(s)" in line for line in logs)
    assert any(line == f"sampling: {len(PROBLEMS)} problem(s) need 4 chains each" for line in logs)
    assert sorted(distributed) == sorted(local) == sorted(methods)
    for label in methods:
        assert sorted(distributed[label]) == [p.id for p in PROBLEMS]
        assert outcome(distributed[label]) == outcome(local[label]), label
        assert without_timing(distributed[label]) == without_timing(local[label]), label
        assert {r["config"] for r in distributed[label].values()} == {label}
    samples = [sorted((tmp_path / d / "samples.jsonl").read_text().splitlines()) for d in ("local", "ray")]
    assert samples[0] == samples[1] and len(samples[0]) == len(PROBLEMS)  # the same chains, seeds and cost
    scores = [sorted((tmp_path / d / "scores.jsonl").read_text().splitlines()) for d in ("local", "ray")]
    assert scores[0] == scores[1] and scores[0]  # each chain's score once, written by the driver
    mg = local["magicore@4"].values()
    assert all(r["error"] is None for r in mg)
    assert any(r["hard"] and r["rounds"] >= 1 for r in mg) and any(r["hard"] is False for r in mg)  # both routes taken
    assert all(r["error"] is None and r["rounds"] >= 1 for r in distributed["magicore-all@2"].values())  # all refined
    # the configurations replay the stored chains: sc@4 all four, bok@2 the first two
    stored = {e["id"]: [c["text"] for c in e["chains"]] for e in map(json.loads, samples[1])}
    for i, chains in stored.items():
        assert [c["text"] for c in distributed["sc@4"][i]["chains"]] == chains
        assert sorted(c["text"] for c in distributed["bok@2"][i]["chains"]) == sorted(chains[:2])
    assert all(r["error"] is None and len(r["drafts"]) >= 2 for r in distributed["self-refine@2"].values())
    cal = [json.loads((tmp_path / d / "magicore@4.calibration.json").read_text()) for d in ("local", "ray")]
    assert cal[0] == cal[1] and cal[0]["n"] == len(PROBLEMS)
    firsts = [(tmp_path / d / "magicore@4.calibration_chains.jsonl").read_text().splitlines() for d in ("local", "ray")]
    strip = [sorted(json.dumps({k: v for k, v in json.loads(line).items() if k != "seconds"}) for line in f)
             for f in firsts]  # fmt: skip
    assert strip[0] == strip[1]


def test_a_worker_killed_mid_run_has_its_problems_completed_once(tmp_path, local_ray):
    killed = threading.Event()
    replies = Replies()

    def reply(body, counter):
        if counter == 5 and not killed.is_set():  # the sixth request: both workers are sampling problems
            killed.set()
            threading.Thread(target=_kill_worker, args=(0,), daemon=True).start()
        return replies(body, counter)

    logs: list[str] = []
    with MockServer(MockSettings(latency=0.3, reply=reply)) as server:
        records = asyncio.run(run_bench_ray(PROBLEMS, settings(["sc@4"]), models_for(server), specs_for(server),
                                            tmp_path, workers=2, progress=False, log=logs.append))["sc@4"]  # fmt: skip
        requests = len(server.settings.requests)
    assert killed.is_set()
    died = [line for line in logs if line.startswith("ray: worker 0 died with")]
    assert len(died) == 1, logs
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in samples) == sorted(p.id for p in PROBLEMS)  # each problem sampled once
    assert all([c["seed"] for c in e["chains"]] == [0, 1, 2, 3] for e in samples)
    lines = [json.loads(line) for line in (tmp_path / "sc@4.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(p.id for p in PROBLEMS)  # each problem recorded once
    assert all(r["error"] is None and r["answer"] and r["requests"] == 4 for r in lines)
    lost = int(died[0].split(" with ")[1].split()[0])
    # the killed worker's problems were sampled again elsewhere (4 requests each, fewer if it had
    # not sent them all when it died); no other problem was
    assert lost >= 1 and 4 * len(PROBLEMS) <= requests <= 4 * (len(PROBLEMS) + lost)
    assert sorted(records) == sorted(p.id for p in PROBLEMS)


def _kill_worker(slot: int) -> None:
    actor = ray.get_actor(f"{WORKER_PREFIX}-{slot}")
    os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)


def test_a_rerun_resumes_and_counts_no_problem_twice(tmp_path, local_ray):
    methods = ["sc@4", "magicore@4"]
    with MockServer(MockSettings(latency=0.0, reply=Replies())) as server:
        first = asyncio.run(run_bench_ray(PROBLEMS, settings(methods), models_for(server),
                                          specs_for(server), tmp_path, workers=2, progress=False, log=lambda _t: None))  # fmt: skip
        lines = (tmp_path / "sc@4.jsonl").read_text().splitlines()
        (tmp_path / "sc@4.jsonl").write_text("\n".join(lines[:5]) + "\n")  # as if stopped after five
        asked = len(server.settings.requests)
        logs: list[str] = []
        again = asyncio.run(run_bench_ray(PROBLEMS, settings(methods), models_for(server),
                                          specs_for(server), tmp_path, workers=2, progress=False, log=logs.append))  # fmt: skip
        assert len(server.settings.requests) == asked  # the three missing replay their stored chains
    assert "sc@4: 3 problem(s) to run, 5 done or waiting for samples" in logs
    assert not any(line.startswith("sampling:") for line in logs)
    for label in methods:
        ids = [json.loads(line)["id"] for line in (tmp_path / f"{label}.jsonl").read_text().splitlines()]
        assert sorted(ids) == sorted(p.id for p in PROBLEMS), label
        assert without_timing(again[label]) == without_timing(first[label])


def test_a_larger_k_samples_only_the_missing_chains(tmp_path, local_ray):
    with MockServer(MockSettings(latency=0.0, reply=Replies())) as server:
        asyncio.run(run_bench_ray(PROBLEMS, settings(["sc@2"]), models_for(server), specs_for(server), tmp_path,
                                  workers=2, progress=False, log=lambda _t: None))  # fmt: skip
        asked = len(server.settings.requests)
        records = asyncio.run(run_bench_ray(PROBLEMS, settings(["sc@2", "sc@4"]), models_for(server),
                                            specs_for(server), tmp_path, workers=2, progress=False,
                                            log=lambda _t: None))  # fmt: skip
        assert len(server.settings.requests) - asked == 2 * len(PROBLEMS)
    for problem in PROBLEMS:
        two, four = records["sc@2"][problem.id]["chains"], records["sc@4"][problem.id]["chains"]
        assert [c["text"] for c in four[:2]] == [c["text"] for c in two]  # sc@4 extends sc@2's chains


def test_a_configuration_that_is_not_one_is_one_sentence(tmp_path):
    from magicore.tools.errors import InputError

    with pytest.raises(InputError, match="^'sc@x' is not a method configuration: use METHOD or METHOD@K"):
        asyncio.run(run_bench_ray(PROBLEMS, settings(["sc@x"]), Models(None), WorkerSpecs("m", "r"), tmp_path,
                                  progress=False, log=lambda _t: None))  # fmt: skip
    assert not (tmp_path / "run.json").exists()


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
    assert "| sc@3 | 5 | 60.0% (3/5) |" in printed.out and "| magicore@3 | 5 | 60.0% (3/5) |" in printed.out
    assert len((tmp_path / "o" / "samples.jsonl").read_text().splitlines()) == 5
    assert (tmp_path / "o" / "magicore@3.calibration.json").exists()
    assert "ray: 2 worker(s)" in printed.err


def test_ray_options_without_the_ray_engine_are_a_usage_error(tmp_path, capsys):
    assert main(["bench", "--out", str(tmp_path), "--workers", "2"]) == 2  # a usage error
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
    assert code == 2  # bad input: a usage error
    assert capsys.readouterr().err.strip().startswith("magicore: error: cannot reach the Ray cluster at 127.0.0.1:")


@pytest.mark.parametrize("first_engine", ["local", "ray"])
def test_a_run_begun_on_one_engine_is_finished_on_the_other(tmp_path, local_ray, first_engine):
    """MAgICoRe's store (records, calibration, checkpoints.sqlite) is the same for both engines:
    cut three records and the other engine redoes only those, with the same calibration."""

    def run(engine, server):
        s = settings(["magicore@4"])
        if engine == "local":
            return asyncio.run(run_bench(PROBLEMS, s, models_for(server), tmp_path, progress=False,
                                         log=lambda _t: None))["magicore@4"]  # fmt: skip
        return asyncio.run(run_bench_ray(PROBLEMS, s, models_for(server), specs_for(server), tmp_path, workers=2,
                                         progress=False, log=lambda _t: None))["magicore@4"]  # fmt: skip

    with MockServer(MockSettings(reply=Replies())) as server:
        first = run(first_engine, server)
        calibration = (tmp_path / "magicore@4.calibration.json").read_text()
        samples = (tmp_path / "samples.jsonl").read_text()
        lines = (tmp_path / "magicore@4.jsonl").read_text().splitlines()
        kept = lines[:-3]
        (tmp_path / "magicore@4.jsonl").write_text("\n".join(kept) + "\n")
        asked = len(server.settings.requests)
        second = run("ray" if first_engine == "local" else "local", server)
        again = calls(server.settings.requests[asked:])
    ids = [json.loads(line)["id"] for line in (tmp_path / "magicore@4.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(p.id for p in PROBLEMS)  # each once
    assert (tmp_path / "magicore@4.calibration.json").read_text() == calibration
    assert (tmp_path / "samples.jsonl").read_text() == samples  # nothing sampled again
    assert outcome(second) == outcome(first)
    assert without_timing(second) == without_timing(first)
    cut = [json.loads(line) for line in lines[-3:]]
    if first_engine == "local":  # the local engine's threads ran to the end: nothing to ask again
        assert again == 0
    else:  # the Ray engine saves states paused before "route": only phase 2 runs again
        phase1 = sum(r["usage_by_role"].get("solver", {}).get("requests", 0) for r in cut)  # replayed, not asked
        assert again == sum(r["requests"] for r in cut) - phase1


def test_a_problem_whose_sampling_fails_waits_for_a_rerun(tmp_path, local_ray):
    broken = {"on": True}
    replies = Replies()

    def reply(body, counter):  # the server fails every request about q2 while broken
        if broken["on"] and "Ann has 2 pens" in json.dumps(body.get("messages")):
            raise RuntimeError("the server failed")
        return replies(body, counter)

    with MockServer(MockSettings(reply=reply)) as server:
        logs: list[str] = []
        first = asyncio.run(run_bench_ray(PROBLEMS, settings(["sc@2"]), models_for(server), specs_for(server),
                                          tmp_path, workers=2, progress=False, log=logs.append))["sc@2"]  # fmt: skip
        assert any(line.startswith("sampling q2 failed: ") for line in logs), logs
        assert sorted(first) == sorted(p.id for p in PROBLEMS if p.id != "q2")  # q2 has no record, not an error
        assert '"id": "q2"' not in (tmp_path / "samples.jsonl").read_text()
        broken["on"] = False
        again = asyncio.run(run_bench_ray(PROBLEMS, settings(["sc@2"]), models_for(server), specs_for(server),
                                          tmp_path, workers=2, progress=False, log=lambda _t: None))["sc@2"]  # fmt: skip
    assert sorted(again) == sorted(p.id for p in PROBLEMS) and again["q2"]["error"] is None
    assert without_timing({i: r for i, r in again.items() if i != "q2"}) == without_timing(first)
