"""Splitting solutions into steps (magicore.tools.steps) and parsing chains."""

from magicore.agents.chain import Chain
from magicore.tools.steps import format_steps, split_steps


def test_step_labels():
    text = "Let me think.\nStep 1: 16 - 3 = 13\nStep 2: 13 - 4 = 9\nStep 3: 9 * 2 = 18\nThe answer is \\boxed{18}."
    assert split_steps(text) == ["16 - 3 = 13", "13 - 4 = 9", "9 * 2 = 18\nThe answer is \\boxed{18}."]


def test_step_labels_with_markdown_and_case():
    text = "**Step 1:** add\n**STEP 2**: multiply\n### Step 3 - done"
    assert split_steps(text) == ["add", "multiply", "done"]


def test_numbered_list_fallback():
    assert split_steps("1. add 2\n2. double it\n3) done") == ["add 2", "double it", "done"]


def test_paragraph_and_line_fallback():
    assert split_steps("First add.\n\nThen double.") == ["First add.", "Then double."]
    assert split_steps("add\ndouble") == ["add", "double"]
    assert split_steps("") == []


def test_format_steps_annotates_scores():
    assert format_steps(["a", "b"], [0.91, 0.2]) == "Step 1: a (Score: 9/10)\nStep 2: b (Score: 2/10)"


def test_chain_from_text_marks_unparsable():
    good = Chain.from_text("Step 1: 2+3=5\nThe answer is \\boxed{5}")
    assert good.parsed and good.answer == "5" and good.steps == ["2+3=5\nThe answer is \\boxed{5}"]
    bad = Chain.from_text("I do not know")
    assert not bad.parsed and bad.answer is None


def test_step_labels_are_not_answers():
    cut = "Step 1: 3 + 4 = 7 apples.\nStep 2: Then he"
    assert Chain.from_text(cut).answer == "7"  # the last number, not the label "2"
    assert Chain.from_text("Step 1: Tom has some apples.\nStep 2: He eats").answer is None
    assert Chain.from_text("1. Tom has 5 apples\n2. He eats").answer == "5"


def test_a_chain_cut_off_at_the_token_limit_has_only_an_explicit_answer():
    cut = "Step 1: 16 - 3 - 4 = 9 eggs.\nStep 2: She sells 9 eggs at $2 each, so 9 *"
    assert Chain.from_text(cut, finish_reason="length").answer is None
    assert Chain.from_text(cut, finish_reason="stop").answer == "9"
    boxed = "Step 1: 9 * 2 = 18.\nThe answer is \\boxed{18}. Also note that 3"
    assert Chain.from_text(boxed, finish_reason="length").answer == "18"


def test_chain_reward_is_orm_plus_step_product():
    chain = Chain.from_text("Step 1: x\nStep 2: y \\boxed{1}", step_scores=[0.5, 0.8], orm=0.3)
    assert chain.reward == 0.3 + 0.5 * 0.8
    unparsed = Chain.from_text("nothing", step_scores=[0.9], orm=0.4)
    assert unparsed.reward == 0.4  # no parsable answer: step score 0


def test_code_blocks_stay_whole_and_a_backtick_in_a_sentence_opens_none():
    program = "```python\ndef f():\n    # Step 2: not a step\n    x = 1\n\n    return x\n```"
    assert split_steps(f"Step 1: Write it.\n{program}\nStep 2: Done.") == [f"Write it.\n{program}", "Done."]
    assert split_steps(f"Intro.\n\n{program}\n\nThe end.") == ["Intro.", program, "The end."]
    inline = "Step 1: Write ``` around code.\nStep 2: 2+2=4.\nStep 3: The answer is \\boxed{4}."
    assert split_steps(inline) == ["Write ``` around code.", "2+2=4.", "The answer is \\boxed{4}."]
    assert split_steps("a\u2028b\u2028c") == ["a", "b", "c"]  # every line break splitlines() knows
