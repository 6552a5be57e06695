"""The easy/hard rule (step 4 of the method) against hand-computed cases (calibration:
tests/test_calibration.py).

Notation in the comments: R = ORM + prod(step scores) (0 for a chain with no answer),
z = (R - mu) / sigma, p the normalised vote distribution, H = -sum p ln p, and the confidence
2 * (1 - sigmoid(H)) = 2 * (1 - 1 / (1 + e^-H)) = 2 / (1 + e^H). A confidence is >= 0.5
exactly when e^H <= 3, i.e. H <= ln 3 = 1.098612.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from magicore.agents.chain import Chain
from magicore.graphs.routing import classify_difficulty, confidence, entropy, reward, step_product


def chain(answer, orm, steps):
    return SimpleNamespace(answer=answer, orm=orm, step_scores=steps)


# ---------------------------------------------------------------------------------------------
# classify_difficulty


def test_easy_when_the_majority_scores_above_the_calibration_mean():
    chains = [chain("8", 0.9, [0.9])] * 3 + [chain("5", 0.2, [0.3])]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    # R(8) = 0.9 + 0.9 = 1.8, z = (1.8 - 1) / 0.2 = 4.0 for each of the three "8" chains
    assert d.majority == "8"
    assert d.mean_z == pytest.approx(4.0)
    assert d.cond1 is True
    # ORM votes {8: 2.7, 5: 0.2}: p = (27/29, 2/29) = (0.931034, 0.068966)
    #   H = 0.250955, sigmoid(H) = 0.562411, confidence = 2 * (1 - 0.562411) = 0.875177
    assert d.orm_confidence == pytest.approx(0.8751770064, rel=1e-9)
    # PRM votes {8: 3 * 0.9 = 2.7, 5: 0.3}: p = (0.9, 0.1)
    #   H = 0.325083, sigmoid(H) = 0.580563, confidence = 0.838875
    assert d.prm_confidence == pytest.approx(0.8388749804, rel=1e-9)
    assert d.hard is False


def test_thresholds_are_parameters():
    chains = [chain("8", 0.9, [0.9])] * 3 + [chain("5", 0.2, [0.3])]  # the case above: mean z 4.0
    # with cond1 demanding z >= 5 it fails; the confidences 0.875 and 0.839 still make it easy
    d = classify_difficulty(chains, mu=1.0, sigma=0.2, z_threshold=5.0)
    assert d.cond1 is False and d.hard is False
    # demanding confidence >= 0.85 as well, the PRM confidence (0.839) falls short: hard
    d = classify_difficulty(chains, mu=1.0, sigma=0.2, z_threshold=5.0, confidence_threshold=0.85)
    assert d.hard is True


def test_cond1_alone_makes_a_question_easy_even_with_spread_votes():
    # four different answers, each R = 0.9 + 0.9 = 1.8: the counts tie, the first seen ("5") is
    # the majority; z = (1.8 - 1) / 0.2 = 4.0, so cond1 holds
    chains = [chain(a, 0.9, [0.9]) for a in ("5", "6", "7", "9")]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    assert d.majority == "5" and d.cond1 is True and d.mean_z == pytest.approx(4.0)
    # both distributions uniform over 4: H = ln 4 = 1.386294, sigmoid(ln 4) = 1 / (1 + 1/4) = 0.8,
    # confidence = 2 * (1 - 0.8) = 0.4 < 0.5; not hard all the same (hard needs cond1 to fail)
    assert d.orm_confidence == pytest.approx(0.4) and d.prm_confidence == pytest.approx(0.4)
    assert d.hard is False


def test_hard_when_cond1_fails_and_the_votes_are_spread():
    chains = [chain(a, 0.2, [0.3]) for a in ("5", "6", "7", "9")]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    # R = 0.2 + 0.3 = 0.5 for every chain; majority "5" (first seen of a four-way tie),
    # z = (0.5 - 1) / 0.2 = -2.5 < 0: cond1 fails
    assert d.majority == "5" and d.mean_z == pytest.approx(-2.5) and d.cond1 is False
    # ORM {5: .2, 6: .2, 7: .2, 9: .2} and PRM {.3 each}: uniform over 4, confidence 0.4 (above)
    assert d.orm_confidence == pytest.approx(0.4) and d.prm_confidence == pytest.approx(0.4)
    assert d.hard is True


def test_hard_when_only_the_orm_confidence_is_low():
    chains = [chain("5", 0.2, [0.9])] + [chain(a, 0.2, [0.01]) for a in ("6", "7", "9")]
    d = classify_difficulty(chains, mu=2.0, sigma=0.5)
    # majority "5" (four-way tie, first seen), R = 0.2 + 0.9 = 1.1, z = (1.1 - 2) / 0.5 = -1.8
    assert d.majority == "5" and d.mean_z == pytest.approx(-1.8) and d.cond1 is False
    # ORM uniform over 4 (0.2 each): confidence 0.4 < 0.5
    assert d.orm_confidence == pytest.approx(0.4)
    # PRM {5: 0.9, 6: .01, 7: .01, 9: .01}, total 0.93: p = (0.967742, 0.010753 x 3)
    #   H = 0.177945, e^H = 1.194760, confidence = 2 / (1 + 1.194760) = 0.911262 >= 0.5
    assert d.prm_confidence == pytest.approx(0.9112615440, rel=1e-9)
    assert d.hard is True  # cond1 fails AND one confidence is below 0.5


def test_cond1_fails_but_both_confidences_are_high_so_easy():
    chains = [chain("8", 0.2, [0.3])] * 3 + [chain("5", 0.2, [0.3])]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    # R = 0.5 everywhere, majority "8", z = -2.5: cond1 fails
    assert d.majority == "8" and d.mean_z == pytest.approx(-2.5) and d.cond1 is False
    # ORM {8: 0.6, 5: 0.2} and PRM {8: 0.9, 5: 0.3}: both p = (0.75, 0.25)
    #   H = -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.562335, sigmoid(H) = 0.636993, confidence = 0.726015
    assert d.orm_confidence == pytest.approx(0.7260146493, rel=1e-9)
    assert d.prm_confidence == pytest.approx(0.7260146493, rel=1e-9)
    assert d.hard is False


def test_unparsed_chains_score_zero_steps_and_form_their_own_bucket():
    chains = [
        chain(None, 0.5, [0.9, 0.9]),  # no answer: step product 0, not 0.81
        chain(None, 0.5, []),
        chain("8", 0.5, [0.5, 0.8]),  # product 0.4
        chain("5", 0.5, [0.01]),
        chain("8", 0.5, [0.4]),
        chain("7", 0.5, [0.01]),
    ]
    assert step_product(chains[0]) == 0.0 and reward(chains[0]) == 0.5
    assert step_product(chains[2]) == pytest.approx(0.4) and reward(chains[2]) == pytest.approx(0.9)
    d = classify_difficulty(chains, mu=1.0, sigma=0.5)
    # the unanswered chains tie "8" on count and come first, but cannot be the majority
    assert d.majority == "8"
    # R(8) = 0.5 + 0.4 = 0.9 for both, z = (0.9 - 1) / 0.5 = -0.2: cond1 fails
    assert d.mean_z == pytest.approx(-0.2) and d.cond1 is False
    # ORM {None: 1.0, 8: 1.0, 5: 0.5, 7: 0.5}, total 3: p = (1/3, 1/3, 1/6, 1/6)
    #   H = (2/3) ln 3 + (1/3) ln 6 = 1.329661 > ln 3; sigmoid(H) = 0.790785, confidence = 0.418431
    #   (without the None bucket p = (1/2, 1/4, 1/4), H = 1.5 ln 2 = 1.039721, confidence 0.522408:
    #   easy; the unanswered chains' bucket is what makes this question hard)
    assert d.orm_confidence == pytest.approx(0.4184307752, rel=1e-9)
    # PRM {None: 0, 8: 0.8, 5: 0.01, 7: 0.01}, total 0.82: p = (0, 0.975610, 0.012195, 0.012195)
    #   H = 0.131571 (0 ln 0 = 0), sigmoid(H) = 0.532845, confidence = 0.934309
    assert d.prm_confidence == pytest.approx(0.9343090818, rel=1e-9)
    assert d.hard is True


def test_equivalent_answers_are_one_answer():
    chains = [chain("7", 0.3, [0.2]), chain("1,000", 0.6, [0.5]), chain("1000", 0.6, [0.5])]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    # "1,000" and "1000" are one group (count 2, named by its first member), so it beats "7";
    # grouped by exact string the three would tie and "7" (first seen) would win
    assert d.majority == "1,000"
    # R = 0.6 + 0.5 = 1.1, z = (1.1 - 1) / 0.2 = 0.5 for both: cond1 holds
    assert d.mean_z == pytest.approx(0.5) and d.cond1 is True
    # ORM {7: 0.3, 1,000: 1.2}: p = (0.2, 0.8), H = 0.500402, sigmoid(H) = 0.622554, conf = 0.754892
    assert d.orm_confidence == pytest.approx(0.7548922049, rel=1e-9)
    # PRM {7: 0.2, 1,000: 1.0}: p = (1/6, 5/6), H = 0.450561, sigmoid(H) = 0.610773, conf = 0.778455
    assert d.prm_confidence == pytest.approx(0.7784546838, rel=1e-9)
    assert d.hard is False


def test_the_majority_is_by_count_not_by_reward():
    chains = [chain("8", 0.9, [0.9]), chain("5", 0.1, [0.1]), chain("5", 0.1, [0.1])]
    d = classify_difficulty(chains, mu=1.0, sigma=0.5)
    # "5" has two chains, "8" one: "5" is the majority although R(8) = 1.8 > R(5) = 0.2
    assert d.majority == "5"
    # z(5) = (0.2 - 1) / 0.5 = -1.6 (z(8) would have been (1.8 - 1) / 0.5 = +1.6)
    assert d.mean_z == pytest.approx(-1.6) and d.cond1 is False
    # ORM {8: 0.9, 5: 0.2} and PRM {8: 0.9, 5: 0.1 + 0.1 = 0.2}: both p = (9/11, 2/11)
    #   H = 0.474139, sigmoid(H) = 0.616363, confidence = 0.767274
    assert d.orm_confidence == pytest.approx(0.7672739856, rel=1e-9)
    assert d.prm_confidence == pytest.approx(0.7672739856, rel=1e-9)
    assert d.hard is False


def test_sigma_zero_gives_every_chain_z_zero():
    # the hard case above, but sigma = 0: z = 0 for every chain, mean 0 >= 0, so cond1 holds
    # even though every R (0.5) is below mu (1)
    chains = [chain(a, 0.2, [0.3]) for a in ("5", "6", "7", "9")]
    d = classify_difficulty(chains, mu=1.0, sigma=0.0)
    assert d.mean_z == 0.0 and d.cond1 is True and d.hard is False
    assert d.orm_confidence == pytest.approx(0.4)


def test_all_unparsed_has_no_majority_and_is_hard():
    chains = [chain(None, 0.5, [0.9])] * 3
    d = classify_difficulty(chains, mu=0.0, sigma=1.0)
    # no stated answer: no majority, no z-scores, cond1 fails (even with mu = 0 below every R)
    assert d.majority is None and d.mean_z is None and d.cond1 is False
    # ORM {None: 1.5}: one bucket, H = 0, confidence 2 * (1 - 1/2) = 1
    assert d.orm_confidence == pytest.approx(1.0)
    # PRM {None: 0}: total 0, confidence 0 by the stated convention
    assert d.prm_confidence == 0.0
    assert d.hard is True


def test_a_distribution_with_zero_total_has_confidence_zero():
    chains = [chain("8", 0.0, [0.5])] * 2
    d = classify_difficulty(chains, mu=1.0, sigma=0.5)
    # R = 0 + 0.5 = 0.5, z = (0.5 - 1) / 0.5 = -1: cond1 fails
    assert d.majority == "8" and d.mean_z == pytest.approx(-1.0) and d.cond1 is False
    # ORM {8: 0}: total 0, confidence 0 although every chain agrees
    assert d.orm_confidence == 0.0
    # PRM {8: 1.0}: one bucket, H = 0, confidence 1
    assert d.prm_confidence == pytest.approx(1.0)
    assert d.hard is True


def test_three_equal_buckets_sit_exactly_on_the_threshold():
    # uniform over 3: H = ln 3, e^H = 3, confidence = 2 / (1 + 3) = 0.5: not below 0.5.
    # So with k <= 3 chains a distribution with a positive total never has confidence < 0.5,
    # and only a zero total (confidence 0) can make such a question hard.
    chains = [chain(a, 0.2, [0.3]) for a in ("5", "6", "7")]
    d = classify_difficulty(chains, mu=1.0, sigma=0.2)
    assert d.cond1 is False
    assert d.orm_confidence == pytest.approx(0.5) and d.prm_confidence == pytest.approx(0.5)
    assert d.hard is False


def test_any_object_with_the_three_attributes_works():
    class Plain:
        def __init__(self, answer, orm, step_scores):
            self.answer, self.orm, self.step_scores = answer, orm, step_scores

    spec = [("5", 0.2, [0.3]), ("6", 0.2, [0.3]), ("7", 0.2, [0.3]), ("9", 0.2, [0.3])]
    plain = [Plain(*s) for s in spec]
    pydantic = [Chain(text=f"\\boxed{{{a}}}", answer=a, orm=o, step_scores=s) for a, o, s in spec]
    namespaces = [chain(*s) for s in spec]
    results = {str(classify_difficulty(c, mu=1.0, sigma=0.2)) for c in (plain, pydantic, namespaces)}
    assert len(results) == 1
    d = classify_difficulty(plain, mu=1.0, sigma=0.2)
    for attribute in ("hard", "cond1", "orm_confidence", "prm_confidence", "majority"):
        assert hasattr(d, attribute)
    assert d.hard is True


def test_no_chains_is_an_error():
    with pytest.raises(ValueError):
        classify_difficulty([], mu=1.0, sigma=0.2)


def test_entropy_and_confidence_helpers():
    assert entropy([1.0, 1.0]) == pytest.approx(math.log(2))
    assert entropy([2.0]) == 0.0
    assert confidence([5.0]) == pytest.approx(1.0)  # H = 0
    assert confidence([1.0, 1.0]) == pytest.approx(2 / 3)  # H = ln 2, 2 / (1 + 2)
    assert confidence([0.0, 0.0]) == 0.0 and confidence([]) == 0.0
