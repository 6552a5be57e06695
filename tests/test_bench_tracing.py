"""`magicore bench --trace`: every MAgICoRe problem is one trace under its own
`invoke_workflow magicore` root, phase 1 (solve, score) and phase 2 (route, review, refine)
alike, with the session id, the route events and the run's totals, as under `asolve`; the
sampling of a problem, shared by every configuration, is its own `invoke_workflow sample`
trace."""

from opentelemetry.trace import StatusCode

from tests.test_bench import HARD, PROBLEMS, bench, scripted
from tests.test_tracing import Tree


def roots_and_tree(exporter):
    tree = Tree(exporter.get_finished_spans())
    roots = [s for s in tree.spans if s.parent is None]
    for s in tree.spans:  # every span sits in its problem's trace, under that problem's root
        top = ([s, *tree.ancestors(s)])[-1]
        assert top in roots and top.context.trace_id == s.context.trace_id, s.name
        assert s.attributes["session.id"] == top.attributes["session.id"], s.name
    return tree, roots


def phases(root):
    return [e.attributes["magicore.bench.phase"] for e in root.events if e.name == "magicore.bench.phase"]


def split(roots):
    sampling = [r for r in roots if r.name == "invoke_workflow sample"]
    return sampling, [r for r in roots if r not in sampling]


def test_batch_bench_gives_one_trace_per_problem_with_both_phases(tmp_path, spans):
    records = bench(tmp_path, scripted(), methods=["magicore@4"])["magicore@4"]
    tree, roots = roots_and_tree(spans)
    sampling, roots = split(roots)
    assert len(sampling) == len(PROBLEMS)
    for root in sampling:  # four chains, one request each
        agents = tree.children(root, "invoke_agent solver")
        assert len(agents) == 4 and all(len(tree.children(a, "chat ")) == 1 for a in agents)
    assert [r.name for r in roots] == ["invoke_workflow magicore"] * len(PROBLEMS)
    assert len({r.context.trace_id for r in roots}) == len({r.attributes["session.id"] for r in roots}) == 5
    by_calls = {}
    for root in roots:
        assert root.status.status_code != StatusCode.ERROR
        assert phases(root) == [1, 2]  # phase 1 and phase 2 of the problem in the same root
        (solver,) = tree.children(root, "invoke_agent solver")
        assert solver.attributes["magicore.replayed"] is True and not tree.children(solver, "chat ")
        assert len(tree.children(root, "execute_tool reward_model")) >= 4
        routes = [e for e in root.events if e.name == "magicore.route"]
        hard_per_round = [e.attributes["magicore.route.hard"] for e in routes]
        assert routes and hard_per_round == list(root.attributes["magicore.route.hard"])
        by_calls.setdefault(root.attributes["magicore.usage.llm_calls"], []).append(root)
    # record_result: the same totals as the bench's records
    assert sorted(by_calls) == [4, 12] and len(by_calls[4]) == 4
    (hard,) = by_calls[12]
    assert hard.attributes["magicore.answer"] == records[HARD]["answer"] == "12"
    assert hard.attributes["magicore.rounds"] == records[HARD]["rounds"] == 1
    assert hard.attributes["magicore.route.hard"][0] is True
    assert hard.attributes["magicore.usage.input_tokens"] == records[HARD]["input_tokens"]
    assert len(tree.children(hard, "invoke_agent reviewer")) == len(tree.children(hard, "invoke_agent refiner")) == 4
    for easy in by_calls[4]:
        assert not tree.children(easy, "invoke_agent reviewer") and easy.attributes["magicore.rounds"] == 0


def test_a_problem_failing_in_sampling_ends_its_sampling_root_as_an_error(tmp_path, spans):
    records = bench(tmp_path, scripted(fail={"p3"}), methods=["magicore@4"])["magicore@4"]
    assert "p3" not in records and not records["p0"]["error"]  # it waits for a rerun
    tree, roots = roots_and_tree(spans)
    sampling, roots = split(roots)
    failed = [r for r in sampling if r.status.status_code == StatusCode.ERROR]
    assert len(sampling) == 5 and len(failed) == 1 and failed[0].attributes["error.type"] == "ModelError"
    assert len(roots) == 4 and all(phases(r) == [1, 2] for r in roots)


def test_a_problem_failing_in_phase_1_ends_its_root_as_an_error(tmp_path, spans):
    records = bench(tmp_path, scripted(reviewer_down=True), methods=["magicore@4"])["magicore@4"]
    assert records[HARD]["error"] and not records["p0"]["error"]
    tree, roots = roots_and_tree(spans)
    _, roots = split(roots)
    failed = [r for r in roots if r.status.status_code == StatusCode.ERROR]
    assert len(roots) == 5 and len(failed) == 1 and phases(failed[0]) == [1, 2]
    assert failed[0].attributes["error.type"] == "ModelError"


def test_self_calibration_opens_the_root_in_its_single_phase(tmp_path, spans):
    bench(tmp_path, scripted(), methods=["magicore@4"], calibration="self")
    tree, roots = roots_and_tree(spans)
    _, roots = split(roots)
    assert [r.name for r in roots] == ["invoke_workflow magicore"] * len(PROBLEMS)
    assert all(phases(r) == [2] and tree.children(r, "invoke_agent solver") for r in roots)
