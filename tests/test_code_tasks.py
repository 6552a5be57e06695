"""The code task family: programs and visible examples parsed from text, the execution reward on
passing, failing, crashing and hanging programs (real sandbox), grouping programs by behaviour,
the Reviewer's evidence, HumanEval's hidden tests (sandboxed, and never shown to any agent)."""

from __future__ import annotations

import asyncio
import time

import pytest

from magicore.agents.chain import Chain
from magicore.agents.fake import ScriptedFakeChatModel
from magicore.agents.prompts import detect_family
from magicore.graphs.grouping import answer_groups
from magicore.graphs.routing import classify_difficulty
from magicore.tools.code_runner import ProgramRuns
from magicore.tools.programs import Example, assemble, extract_program, extra_inputs, parse_code_question
from magicore.tools.rewards.execution import ExecutionReward
from magicore.tools.rewards.spec import build_reward, default_reward_spec

QUESTION = '''def add(a: int, b: int) -> int:
    """Add two integers.
    >>> add(2, 3)
    5
    >>> add(-1, 1)
    0
    """
'''


def answer(program: str, steps: str = "Step 1: Add the two numbers.") -> str:
    return f"{steps}\nStep 2: The function:\n```python\n{program}\n```"


GOOD = "def add(a, b):\n    return a + b"
GOOD_OTHER_TEXT = "def add(x, y):\n    total = y\n    total += x\n    return total"
WRONG = "def add(a, b):\n    return a * b"
CRASH = "def add(a, b):\n    return a / 0"
HANG = "def add(a, b):\n    while True:\n        pass"
# Right on the two examples only: a different answer, which its text alone would not show.
MEMORISED = "def add(a, b):\n    return {(2, 3): 5, (-1, 1): 0}.get((a, b), 0)"


def run(coro):
    return asyncio.run(coro)


# ----------------------------------------------------------------------------- parsing


def test_visible_examples_in_the_formats_humaneval_uses():
    question = '''def f(x, y=1):
    """Examples:
    >>> f(1)
    2
    >>> f(2) == 3
    f(3) ==> 4
    f(4) ➞ 5
    * f(5, y=2) -> 7
    for f(6) == 7
    f(7) = 8
    >>> sorted([2, 1])
    [1, 2]
    """
'''
    parsed = parse_code_question(question)
    assert parsed.entry_point == "f"
    assert parsed.examples == (Example("f(1)", "2"), Example("f(2)", "3"), Example("f(3)", "4"),
                               Example("f(4)", "5"), Example("f(5, y=2)", "7"), Example("f(6)", "7"),
                               Example("f(7)", "8"))  # fmt: skip


def test_for_value_examples_count_only_for_one_parameter_functions():
    one = 'def g(lst):\n    """For lst = [1,2] the output should be 3\n    """\n'
    two = 'def g(lst, k):\n    """For lst = [1,2] the output should be 3\n    """\n'
    assert parse_code_question(one).examples == (Example("g([1,2])", "3"),)
    assert parse_code_question(two).examples == ()


def test_program_is_the_last_python_block():
    text = "Step 1: try\n```python\nx = 1\n```\nStep 2: final\n```python\ndef f():\n    return 2\n```\n"
    assert extract_program(text) == "def f():\n    return 2"
    assert extract_program("```bash\nls\n```") is None
    assert extract_program("no code here, the answer is 4") is None
    assert Chain.from_text(answer(GOOD), family="code").answer == GOOD
    assert Chain.from_text("The answer is \\boxed{5}", family="code").answer is None


def test_a_usage_or_output_block_after_the_solution_is_not_the_program():
    usage = answer(GOOD) + "\nUsage:\n```python\nprint(add(2, 3))\n```\nOutput:\n```\n5\n```\n"
    assert extract_program(usage) == GOOD
    assert extract_program("Step 1: the body\n```python\n    return a + b\n```") == "    return a + b"  # no def: still the program


def test_the_step_holding_the_program_gets_its_score_not_a_usage_step_after_it():
    wrong = "def add(a, b):\n    return a * b"
    text = f"Step 1: Add them.\nStep 2: The function:\n```python\n{wrong}\n```\nStep 3: Usage:\n```python\nprint(add(2, 3))\n```"
    steps = Chain.from_text(text, family="code").steps
    # the program fails both examples: its step 0.05; the usage step works through a failing example: 0.05
    assert run(ExecutionReward(ProgramRuns()).ascore_steps(QUESTION, steps)) == [0.9, 0.05, 0.05]


def test_step_labels_inside_a_code_block_are_code():
    program = "def add(a, b):\n    # Step 1: add them\n    total = a + b\n\n    # Step 2: return it\n    return total"
    text = answer(program, "Step 1: Add the numbers.\n1. first a\n2. then b")
    chain = Chain.from_text(text, family="code")
    assert len(chain.steps) == 2 and chain.steps[1].endswith("return total\n```") and chain.answer == program
    unlabelled = f"I will add them.\n\n```python\n{program}\n```"  # paragraphs, one of them a whole block
    assert Chain.from_text(unlabelled, family="code").steps == ["I will add them.", f"```python\n{program}\n```"]
    reward = ExecutionReward(ProgramRuns())
    assert run(reward.ascore_steps(QUESTION, chain.steps)) == [0.9, 0.95]


def test_a_long_program_is_scored_whole():
    padding = "".join(f"    x{i} = {i}  # keeps the program long\n" for i in range(60))
    program = f"def add(a, b):\n{padding}    return a + b"
    assert len(program) > 2_000
    chain = Chain.from_text(answer(program), family="code")
    assert chain.skipped is None and chain.answer == program
    assert run(ExecutionReward(ProgramRuns()).ascore_steps(QUESTION, chain.steps))[-1] == 0.95


def test_a_bare_body_runs_under_the_question_signature():
    source = assemble(QUESTION, "    return a + b", "add")
    namespace: dict = {}
    exec(source, namespace)  # the test's own fixed text, not a model's program
    assert namespace["add"](2, 3) == 5


def test_extra_inputs_are_deterministic_and_new():
    parsed = parse_code_question(QUESTION)
    extra = extra_inputs(parsed)
    assert extra == extra_inputs(parsed) and 0 < len(extra) <= 8
    assert all(e.expected is None and e.call.startswith("add(") for e in extra)
    assert not {e.call for e in extra} & {e.call for e in parsed.examples}


def test_code_questions_are_detected_and_get_the_execution_reward():
    assert detect_family(QUESTION) == "code"
    assert detect_family("What is 2 + 3?") == "word"
    assert default_reward_spec("llama.cpp", "code") == "execution"
    assert default_reward_spec("vllm", "code") == "prm=judge*execution,orm=judge*execution"
    assert default_reward_spec("vllm") == "prm=judge*verifier,orm=judge"
    assert build_reward("execution").name == "prm=execution;orm=execution"


# ----------------------------------------------------------------------------- execution reward


def test_execution_reward_on_a_passing_program():
    reward = ExecutionReward(ProgramRuns())
    text = answer(GOOD, "Step 1: add(2, 3) is 2 + 3 = 5.")
    steps = Chain.from_text(text, family="code").steps
    assert run(reward.ascore_outcome(QUESTION, text)) == 1.0
    assert run(reward.ascore_steps(QUESTION, steps)) == [0.95, 0.95]  # the traced example passed


def test_execution_reward_on_a_failing_program_with_evidence():
    runs = ProgramRuns()
    reward = ExecutionReward(runs)
    text = answer(WRONG, "Step 1: add(-1, 1) gives -1 * 1.")
    steps = Chain.from_text(text, family="code").steps
    assert run(reward.ascore_outcome(QUESTION, text)) == 0.0
    assert run(reward.ascore_steps(QUESTION, steps)) == [0.05, 0.05]
    program_run = run(runs.get(QUESTION, WRONG))
    lines = program_run.evidence()
    assert lines[0] == "ran the program on the 2 examples of the question: 0 passed"
    assert lines[1] == "Example 1: add(2, 3) returned 6; expected 5"


def test_execution_reward_on_a_partly_passing_program():
    half = "def add(a, b):\n    return a + b if a > 0 else 7"
    reward = ExecutionReward(ProgramRuns())
    assert run(reward.ascore_outcome(QUESTION, answer(half))) == 0.5
    steps = Chain.from_text(answer(half), family="code").steps
    assert run(reward.ascore_steps(QUESTION, steps)) == [0.9, pytest.approx(0.5)]


def test_execution_reward_on_a_crashing_program_shows_the_traceback():
    runs = ProgramRuns()
    assert run(ExecutionReward(runs).ascore_outcome(QUESTION, answer(CRASH))) == 0.0
    lines = run(runs.get(QUESTION, CRASH)).evidence()
    assert lines[1].startswith("Example 1: add(2, 3) raised ZeroDivisionError: division by zero (expected 5)")
    assert 'File "<solution>", line 2, in add' in lines[1]
    assert "main.py" not in lines[1]  # the harness's own frames are left out


def test_execution_reward_on_a_program_that_does_not_load():
    runs = ProgramRuns()
    broken = "def add(a, b)\n    return a + b"
    assert run(ExecutionReward(runs).ascore_outcome(QUESTION, answer(broken))) == 0.0
    assert run(runs.get(QUESTION, broken)).evidence()[0].startswith("the program failed to load: SyntaxError")
    assert run(ExecutionReward(runs).ascore_outcome(QUESTION, "Step 1: no code")) == 0.0


def test_execution_reward_on_a_hanging_program_is_bounded():
    runs = ProgramRuns()
    started = time.monotonic()
    assert run(ExecutionReward(runs).ascore_outcome(QUESTION, answer(HANG))) == 0.0
    assert time.monotonic() - started < 15  # two calls time out (2 s each), the rest are skipped
    program_run = run(runs.get(QUESTION, HANG))
    assert [c.status for c in program_run.visible] == ["timeout", "timeout"]
    assert {c.status for c in program_run.cases[2:]} == {"not run"}
    assert "timed out after 2 s" in program_run.evidence()[1]


def test_a_value_whose_own_methods_hang_times_out_its_call():
    """repr and == of the returned value are the program's code too: they run within the call's
    time limit, and the calls after it still run."""
    looping = ("class Forever(int):\n    def __repr__(self):\n        while True:\n            pass\n"
               "def add(a, b):\n    return Forever(a + b) if a > 0 else a + b")  # fmt: skip
    program_run = run(ProgramRuns().get(QUESTION, looping))
    assert [c.status for c in program_run.visible] == ["timeout", "passed"]


def test_a_program_that_exits_or_floods_output_only_ends_its_own_run():
    runs = ProgramRuns()
    exits = "import os\ndef add(a, b):\n    os._exit(3)"
    flood = "def add(a, b):\n    print('x' * 10_000_000)\n    return a + b"
    exit_run = run(runs.get(QUESTION, exits))
    assert exit_run.visible[0].status == "error" and "exited with code 3" in exit_run.visible[0].error
    assert exit_run.visible[1].status == "not run"
    assert run(runs.get(QUESTION, flood)).pass_share == 1.0  # its prints go to a buffer, not the results


def test_hostile_programs_stay_contained(tmp_path):
    marker = tmp_path / "written-by-the-program"
    hostile = (f"def add(a, b):\n    open({str(marker)!r}, 'w').write('x')\n    return a + b")
    fork = ("import os\ndef add(a, b):\n    n = 0\n    for _ in range(200):\n        try:\n            os.fork(); n += 1\n"
            "        except OSError:\n            break\n    return a + b")  # fmt: skip
    runs = ProgramRuns()
    run(runs.get(QUESTION, hostile))
    assert not marker.exists()  # the host's files are out of reach
    started = time.monotonic()
    run(runs.get(QUESTION, fork))
    assert time.monotonic() - started < 30  # process limits end it; the run still returns


def test_the_same_program_runs_once():
    runs = ProgramRuns()
    first, second = run(_twice(runs))
    assert first is second


async def _twice(runs):
    return await asyncio.gather(runs.get(QUESTION, GOOD), runs.get(QUESTION, GOOD))


# ----------------------------------------------------------------------------- grouping by behaviour


def chains_of(*programs):
    return [Chain.from_text(answer(p), family="code") for p in programs]


def test_programs_are_grouped_by_behaviour_not_by_text():
    chains = chains_of(GOOD, GOOD_OTHER_TEXT, WRONG, MEMORISED, GOOD)
    groups = run(answer_groups(QUESTION, "code", chains))
    assert groups[0] == groups[1] == groups[4] == GOOD  # named by its first member
    assert groups[2] == WRONG
    assert groups[3] == MEMORISED  # agrees on the examples, not on the extra inputs


def test_behaviour_groups_see_values_not_their_spelling():
    question = '''def scaled(x: float) -> float:
    """Three tenths of x.
    >>> scaled(1.0)
    0.3
    """
'''
    sums = ["def scaled(x):\n    return 0.1 * x + 0.2 * x", "def scaled(x):\n    return 0.3 * x",
            "def scaled(x):\n    return 0.31 * x"]  # fmt: skip
    groups = run(answer_groups(question, "code", chains_of(*sums)))
    assert groups == [sums[0], sums[0], sums[2]]  # 0.30000000000000004 is 0.3; 0.31 is not
    letters = '''def letters(s: str) -> set:
    """The letters of s.
    >>> letters("ab")
    {'a', 'b'}
    """
'''
    sets = ["def letters(s):\n    return set(s)", "def letters(s):\n    return {c for c in s}",
            "def letters(s):\n    return set(s.upper())"]  # fmt: skip
    for order in (sets, sets[::-1]):  # one group whatever each run's hash seed and the chains' order
        groups = run(answer_groups(letters, "code", chains_of(*order)))
        assert groups.count(groups[order.index(sets[0])]) == 2 and len(set(groups)) == 2


def test_programs_that_print_their_answer_are_told_apart():
    printing = ["def add(a, b):\n    print(a + b)", "def add(a, b):\n    print(a + b + 100)",
                "def add(a, b):\n    print(b + a)"]  # fmt: skip
    assert run(answer_groups(QUESTION, "code", chains_of(*printing))) == [printing[0], printing[1], printing[0]]


def test_without_examples_programs_agree_only_when_their_code_does():
    question = '''def square(n: int) -> int:
    """The square of n."""
'''
    programs = ["def square(n):\n    return n * n", "def square(n):\n    # the square\n\n    return n*n",
                "def square(n):\n    return 0", "def square(n):\n    raise ValueError(n)"]  # fmt: skip
    assert run(answer_groups(question, "code", chains_of(*programs))) == [programs[0], programs[0], programs[2], programs[3]]


def test_programs_that_do_not_load_state_no_answer():
    chains = chains_of("def add(a, b) return", GOOD)
    chains.append(Chain.from_text("Step 1: no code at all", family="code"))
    assert run(answer_groups(QUESTION, "code", chains)) == [None, GOOD, None]


def test_self_consistency_votes_by_behaviour():
    from magicore.graphs.build import build_graph
    from magicore.graphs.config import MethodConfig

    texts = [answer(GOOD), answer(WRONG), answer(GOOD_OTHER_TEXT), answer(WRONG.replace("a * b", "b * a"))
             , answer(GOOD.replace("a + b", "b + a"))]  # fmt: skip
    model = ScriptedFakeChatModel(responses=texts)
    graph = build_graph("sc", model=model, config=MethodConfig(k=5))
    from magicore.agents.prompts import detect_family

    assert detect_family(QUESTION) == "code"  # a function signature with a docstring
    state = run(graph.ainvoke({"question": QUESTION}))
    assert state["answer"] == GOOD
    assert state["votes"] == {GOOD: 3.0, WRONG: 2.0}


def test_routing_uses_behaviour_groups():
    chains = [c.model_copy(update={"step_scores": [0.9, 0.9], "orm": 0.9})
              for c in chains_of(GOOD, GOOD_OTHER_TEXT, GOOD.replace("a + b", "b + a"),
                                 GOOD.replace("a + b", "sum((a, b))"))]  # fmt: skip
    groups = run(answer_groups(QUESTION, "code", chains))
    by_behaviour = classify_difficulty(chains, mu=1.0, sigma=0.5, groups=groups)
    by_text = classify_difficulty(chains, mu=1.0, sigma=0.5)
    assert by_behaviour.orm_confidence == 1.0 and by_behaviour.majority == GOOD
    assert by_text.orm_confidence < 0.5  # four different texts look like four answers


def test_self_refine_on_code_reports_a_sandbox_that_cannot_run_and_still_answers(monkeypatch):
    """The programs' runs only go to the UI events: a sandbox that cannot start (not Linux, a
    refused setup) is one line there, not a failed run."""
    import magicore.tools.code_runner as code_runner
    from magicore.agents.fake import role_of
    from magicore.graphs.build import build_graph
    from magicore.tools.errors import SetupError

    async def no_sandbox(*_args, **_kwargs):
        raise SetupError("The Python sandbox needs Linux")

    monkeypatch.setattr(code_runner, "arun_python", no_sandbox)

    def respond(messages, _index):
        role = role_of(str(messages[0].content))
        return "The solution is correct." if role == "feedback" else answer(GOOD)

    graph = build_graph("self-refine", model=ScriptedFakeChatModel(respond=respond), reward="const:0.5")

    async def go():
        events = []
        # a question of its own: the process remembers programs run for QUESTION by other tests
        async for mode, data in graph.astream({"question": QUESTION + " "}, stream_mode=["custom", "values"]):
            if mode == "custom":
                events.append(data)
            else:
                state = data
        return events, state

    events, state = run(go())
    assert state["answer"] == GOOD
    draft = next(e for e in events if e["type"] == "draft")
    assert draft["tests"] == ["the program could not be run on the question's examples: The Python sandbox needs Linux"]
