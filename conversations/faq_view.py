"""Which further passages an FAQ answer lists under "other related"."""

from __future__ import annotations

from policies.faq import THRESHOLD, Answer

# A further passage is listed only when it scores at least this share of the best answer
# (and above the search's own threshold): below it, it is noise, not a second reading.
RELATED_SHARE = 0.7
_SAME_PREFIX = 12  # characters: two quotes opening alike are the same passage


def related(best: Answer, others: list[Answer]) -> list[Answer]:
    """The others that are relevant and say something the answer and each other do not."""
    floor = max(THRESHOLD, RELATED_SHARE * best.score)
    shown: list[Answer] = [best]
    for other in others:
        if other.kind not in ("entry", "clause") or other.score < floor:
            continue
        if any(_same(other, s) for s in shown):
            continue
        shown.append(other)
    return shown[1:]


def _same(a: Answer, b: Answer) -> bool:
    if a.entry is not None and a.entry == b.entry:
        return True
    qa, qb = _squash(a.quote), _squash(b.quote)
    return bool(qa and qb) and (qa in qb or qb in qa or qa[:_SAME_PREFIX] == qb[:_SAME_PREFIX])


def _squash(text: str | None) -> str:
    return "".join((text or "").split())
