"""Majority and weighted votes (magicore.graphs.aggregation)."""

from types import SimpleNamespace as C

from magicore.graphs.aggregation import group_answers, majority_vote, weighted_vote


def test_majority_groups_equivalent_answers():
    chains = [C(answer="1,000"), C(answer="$1000"), C(answer="999"), C(answer=None), C(answer="1000.0")]
    vote = majority_vote(chains)
    assert vote.answer == "1,000"
    assert vote.weights == {"1,000": 3.0, "999": 1.0}
    assert vote.share() == 0.75


def test_ties_go_to_the_first_answer_seen():
    assert majority_vote([C(answer="7"), C(answer="8")]).answer == "7"
    assert majority_vote([C(answer="8"), C(answer="7")]).answer == "8"


def test_weighted_vote_can_overrule_the_majority():
    chains = [C(answer="5", r=0.1), C(answer="5", r=0.1), C(answer="6", r=0.9)]
    vote = weighted_vote(chains, lambda c: c.r)
    assert vote.answer == "6"
    assert abs(vote.weights["5"] - 0.2) < 1e-12


def test_no_answers_no_winner():
    vote = majority_vote([C(answer=None)] * 3)
    assert vote.answer is None and vote.weights == {} and vote.share() == 0.0


def test_group_answers_uses_math_equivalence():
    assert group_answers([r"\frac{1}{2}", "0.5", "x=0.5", "2"]) == [r"\frac{1}{2}"] * 3 + ["2"]


def _partition(answers):
    groups = {}
    for answer, rep in zip(answers, group_answers(answers)):
        groups.setdefault(rep, set()).add(answer)
    return sorted(sorted(g) for g in groups.values())


def test_grouping_does_not_depend_on_the_order_of_the_answers():
    from itertools import permutations

    answers = ["3.33", "10/3", "3.3333", "7"]
    # "3.33" and "3.3333" do not match each other, but both match 10/3: one group, in any order
    seen = {tuple(map(tuple, _partition(list(order)))) for order in permutations(answers)}
    assert seen == {(("10/3", "3.33", "3.3333"), ("7",))}


def test_the_vote_weights_do_not_depend_on_the_order_of_the_chains():
    from itertools import permutations

    chains = [C(answer="3.33", r=0.5), C(answer="10/3", r=0.25), C(answer="3.3333", r=0.5), C(answer="7", r=1.0)]
    totals = {tuple(sorted(weighted_vote(list(order), lambda c: c.r).weights.values())) for order in permutations(chains)}
    assert totals == {(1.0, 1.25)}


def _groups_pair_by_pair(answers):
    """group_answers' definition, computed the slow way: components of answers_match."""
    from magicore.tools.answers import answers_match

    distinct = list(dict.fromkeys(a for a in answers if a is not None))
    name = {a: a for a in distinct}
    changed = True
    while changed:
        changed = False
        for a in distinct:
            for b in distinct:
                if name[a] != name[b] and answers_match(a, b):
                    first = min(name[a], name[b], key=distinct.index)
                    for c in distinct:
                        if name[c] in (name[a], name[b]) and name[c] != first:
                            name[c], changed = first, True
    return [None if a is None else name[a] for a in answers]


def test_grouping_by_key_gives_the_groups_of_comparing_every_pair():
    import random

    pool = ["42", "42.0", "$42", "42 dollars", "1,000", "1000", "3.33", "10/3", "3.3333", "\\frac{10}{3}",
            "0.5", "1/2", "\\frac{1}{2}", "0.50", "7", "(B)", "b", "x=2", "2", "2.00", "", None, "\\text{7}",
            "-3", "-3.0", "0.17", "1/6", "0.1667", "99%", "99",
            "4", "2x=4", "3", "x+1=3", "0", "x-2=0"]  # equations match a number in one direction only  # fmt: skip
    rng = random.Random(7)
    for _ in range(40):
        answers = [rng.choice(pool) for _ in range(rng.randint(1, 24))]
        assert group_answers(answers) == _groups_pair_by_pair(answers), answers
    assert group_answers(["4", "2x=4"]) == ["4", "4"] and group_answers(["2x=4", "4"]) == ["2x=4", "2x=4"]
