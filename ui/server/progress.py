"""Progress events (graphs/events.py) as short lines of text, streamed to the client as
reasoning deltas while a method runs: chains sampled, scores, the route, reviews, refinements."""

from __future__ import annotations


def _answer(value) -> str:
    return "no parsable answer" if value is None else f"answer {value}"


def describe(event: dict) -> str | None:
    """One line (ending in a newline) for an event, or None for events not worth a line."""
    kind = event.get("type")
    if kind == "chain":
        return f"Chain {event['index'] + 1}/{event['k']} sampled: {_answer(event.get('answer'))}.\n"
    if kind == "scores":
        return f"Round {event['round']}: scored {len(event['scored'])} chains with {event['reward']}.\n"
    if kind == "route":
        if not event["hard"]:
            return f"Round {event['round']}: easy; the weighted vote settles it (majority {event['majority']}).\n"
        then = "reviewing and refining every chain" if event.get("will_refine") else "no rounds left"
        return (f"Round {event['round']}: hard (ORM confidence {event['orm_confidence']:.2f}, PRM confidence "
                f"{event['prm_confidence']:.2f}); {then}.\n")  # fmt: skip
    if kind == "review":
        low = ", ".join(map(str, event.get("low_steps") or [])) or "none"
        return f"Review of chain {event['chain_index'] + 1} (round {event['round']}): low-scoring steps {low}.\n"
    if kind == "refinement":
        return f"Refined chain {event['index'] + 1} (round {event['round']}): {_answer(event.get('answer'))}.\n"
    if kind == "draft":
        return f"Draft {event['round']}: {_answer(event.get('answer'))}.\n"
    if kind == "feedback":
        verdict = "judges it correct" if event.get("done") else "asks for a revision"
        return f"Feedback on draft {event['round']}: {verdict}.\n"
    if kind == "final":
        votes = ", ".join(f"{a}: {w:.3g}" for a, w in (event.get("votes") or {}).items()) or "none"
        return f"Final vote ({votes}): {_answer(event.get('answer'))}.\n"
    return None
