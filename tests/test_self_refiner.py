"""Self-Refine's stop condition: when does feedback declare the solution correct?"""

import pytest

from magicore.agents.self_refiner import says_correct


@pytest.mark.parametrize("feedback", [
    "The solution is correct.",
    "The solution is correct. There is no error.",
    "All steps are correct.",
    "There are no mistakes. The answer is right.",
    "No errors found. The final answer \\boxed{5} is correct.",
    "Your reasoning is completely correct!",
])  # fmt: skip
def test_approval_stops(feedback):
    assert says_correct(feedback)


@pytest.mark.parametrize("feedback", [
    "The solution is not correct.",
    "The solution is incorrect.",
    "The solution is correct, but step 2 has an error.",
    "Step 2 is wrong: 5 * 3 is 15. The solution is correct otherwise.",
    "The answer is correct. However, step 1 should subtract 3.",
    "Step 1: 16 - 3 = 13 is fine.",
    "",
])  # fmt: skip
def test_criticism_or_silence_continues(feedback):
    assert not says_correct(feedback)
