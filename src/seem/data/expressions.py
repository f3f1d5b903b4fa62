"""Referring expressions for synthetic scenes, each guaranteed to pick out exactly one thing.

An expression is built from a *descriptor* (category, colour, pattern, or a generic noun) that selects a
set of things, narrowed by nothing, a position ("on the left"), a size ("the largest") or a relation to
a uniquely described anchor ("below the red circle"). It is kept only when the narrowing leaves one
thing and every other candidate is clearly excluded (margins, not ties), so the text is never a guess.
Geometry is measured on the *visible* parts: centroid and box in pixels, ``(x, y)`` with ``y`` down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_MARGIN = 0.08  # extreme positions must beat the runner-up by this fraction of the image side
_SIZE_RATIO = 1.5  # "largest"/"smallest" must beat the runner-up's visible area by this factor
_PATTERN_WORDS = ("striped", "dotted", "checkered")


@dataclass(frozen=True)
class Referent:
    """What the expression engine knows of one visible thing."""

    index: int  # segment index in the scene
    category: str
    colour: str | None  # None: unknown (photo cut-outs)
    pattern: str | None  # "striped", "dotted", "checkered" or None
    is_shape: bool
    area: int  # visible pixels
    cx: float  # visible centroid, pixels
    cy: float
    box: tuple[float, float, float, float]  # visible (x0, y0, x1, y1), pixels, exclusive end


@dataclass(frozen=True)
class _Descriptor:
    words: tuple[str, ...]  # adjectives + noun, e.g. ("red", "striped", "star")
    members: tuple[int, ...]  # positions in the referent list


def _descriptors(refs: Sequence[Referent], rng: np.random.Generator) -> list[_Descriptor]:
    out: list[_Descriptor] = []
    n = len(refs)

    def add(words, pred):
        members = tuple(i for i in range(n) if pred(refs[i]))
        if members:
            out.append(_Descriptor(tuple(words), members))

    for cat in sorted({r.category for r in refs}):
        add([cat], lambda r, c=cat: r.category == c)
        for col in sorted({r.colour for r in refs if r.category == cat and r.colour}):
            add([col, cat], lambda r, c=cat, k=col: r.category == c and r.colour == k)
            for pat in sorted({r.pattern for r in refs if r.category == cat and r.colour == col and r.pattern}):
                add([col, pat, cat], lambda r, c=cat, k=col, p=pat: (r.category, r.colour, r.pattern) == (c, k, p))
        for pat in sorted({r.pattern for r in refs if r.category == cat and r.pattern}):
            add([pat, cat], lambda r, c=cat, p=pat: r.category == c and r.pattern == p)
    all_coloured = all(r.colour for r in refs)
    generic = str(rng.choice(["object", "thing", "item"]))
    for col in sorted({r.colour for r in refs if r.colour}):
        if all_coloured:
            add([col, generic], lambda r, k=col: r.colour == k)
        else:
            add([col, "shape"], lambda r, k=col: r.is_shape and r.colour == k)
    add([generic], lambda r: True)
    return out


def _extreme(refs, members, key, sign, span) -> int | None:
    """The member with the extreme ``key`` (``sign`` +1 max, -1 min) if it leads by the margin, else None."""
    vals = sorted(((sign * key(refs[i]), i) for i in members), reverse=True)
    if len(vals) == 1:  # a lone candidate must really be at that side: the outer third
        v, i = vals[0]
        return i if (v > 2 * span / 3 if sign > 0 else -v < span / 3) else None
    return vals[0][1] if vals[0][0] - vals[1][0] >= _MARGIN * span else None


def _relation(a: Referent, b: Referent, rel: str) -> int:
    """+1: ``a`` is clearly ``rel`` of ``b`` (beyond its near edge, give or take a quarter of the smaller
    extent, and side by side: the boxes' projections across the direction overlap); -1: clearly not
    (``a``'s centre is not beyond ``b``'s near edge); 0: borderline."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    if rel in ("left", "right"):
        gap = bx0 - ax1 if rel == "left" else ax0 - bx1
        slack = min(ax1 - ax0, bx1 - bx0)
        not_beyond = a.cx >= bx0 if rel == "left" else a.cx <= bx1
        aligned = ay0 < by1 and by0 < ay1
    else:
        gap = by0 - ay1 if rel == "above" else ay0 - by1
        slack = min(ay1 - ay0, by1 - by0)
        not_beyond = a.cy >= by0 if rel == "above" else a.cy <= by1
        aligned = ax0 < bx1 and bx0 < ax1
    if not_beyond:
        return -1
    return 1 if gap > -0.25 * slack and aligned else 0


_POSITION = {
    "left": ["the {np} on the left", "the leftmost {np}", "the {np} at the left", "{np} on the left"],
    "right": ["the {np} on the right", "the rightmost {np}", "the {np} at the right", "{np} on the right"],
    "top": ["the {np} at the top", "the topmost {np}", "the highest {np}", "the {np} on top"],
    "bottom": ["the {np} at the bottom", "the lowest {np}", "the bottommost {np}", "the {np} near the bottom"],
}
_SIZE = {"largest": ["the largest {np}", "the biggest {np}", "largest {np}"], "smallest": ["the smallest {np}", "the tiniest {np}", "smallest {np}"]}
_REL = {
    "left": ["left of", "to the left of", "on the left of"],
    "right": ["right of", "to the right of", "on the right of"],
    "above": ["above", "over"],
    "below": ["below", "under", "beneath"],
}
_BASE = ["the {np}", "the {np}", "the {np}", "{np}", "the {np} in the picture", "the {np} in the image"]


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _candidates(refs: Sequence[Referent], hw: tuple[int, int], rng: np.random.Generator) -> list[tuple[str, str, int]]:
    """All ``(kind, text, position in refs)`` candidates; each text names exactly one referent."""
    h, w = hw
    descs = _descriptors(refs, rng)
    out: list[tuple[str, str, int]] = []
    anchors = [(d, d.members[0]) for d in descs if len(d.members) == 1 and d.words[-1] not in ("object", "thing", "item", "shape")]
    for d in descs:
        np_ = " ".join(d.words)
        if len(d.members) == 1:
            out.append(("base", _pick(rng, _BASE).format(np=np_), d.members[0]))
        for side, key, sign, span in (("left", lambda r: r.cx, -1, w), ("right", lambda r: r.cx, 1, w),
                                       ("top", lambda r: r.cy, -1, h), ("bottom", lambda r: r.cy, 1, h)):
            i = _extreme(refs, d.members, key, sign, span)
            if i is not None:
                out.append(("position", _pick(rng, _POSITION[side]).format(np=np_), i))
        if len(d.members) >= 2:
            areas = sorted((refs[i].area, i) for i in d.members)
            if areas[-1][0] >= _SIZE_RATIO * areas[-2][0]:
                out.append(("size", _pick(rng, _SIZE["largest"]).format(np=np_), areas[-1][1]))
            if areas[1][0] >= _SIZE_RATIO * areas[0][0]:
                out.append(("size", _pick(rng, _SIZE["smallest"]).format(np=np_), areas[0][1]))
        for anchor, b in anchors:
            others = [i for i in d.members if i != b]
            if not others:
                continue
            for rel, words in _REL.items():
                verdicts = [_relation(refs[i], refs[b], rel) for i in others]
                if verdicts.count(1) == 1 and verdicts.count(0) == 0:
                    target = others[verdicts.index(1)]
                    link = "that is " if rng.random() < 0.2 else ""
                    text = f"the {np_} {link}{_pick(rng, words)} the {' '.join(anchor.words)}"
                    out.append(("relation", text, target))
    return out


def referring_expressions(refs: Sequence[Referent], hw: tuple[int, int], rng: np.random.Generator, max_count: int = 4) -> list[tuple[str, int]]:
    """Up to ``max_count`` (at least 1 when any exists) ``(text, segment index)`` pairs for an image of
    size ``hw = (H, W)``; texts are distinct and each identifies exactly one referent. Picks spread over
    kinds (base, position, size, relation) and over different referents."""
    if not refs or max_count < 1:
        return []
    cands = _candidates(refs, hw, rng)
    targets: dict[str, set[int]] = {}
    for _, text, i in cands:
        targets.setdefault(text, set()).add(i)
    by_kind: dict[str, list[tuple[str, int]]] = {}
    seen: set[str] = set()
    for kind, text, i in cands:
        if len(targets[text]) == 1 and text not in seen:  # a wording reused for two referents is dropped
            seen.add(text)
            by_kind.setdefault(kind, []).append((text, i))
    for kind, pool in by_kind.items():
        by_kind[kind] = [pool[j] for j in rng.permutation(len(pool))]
    want = int(rng.integers(1, max_count + 1))
    chosen: list[tuple[str, int]] = []
    used_targets: set[int] = set()
    while len(chosen) < want and any(by_kind.values()):
        kinds = sorted(k for k, v in by_kind.items() if v)
        pool = by_kind[kinds[int(rng.integers(len(kinds)))]]
        fresh = [j for j, (_, i) in enumerate(pool) if i not in used_targets]
        text, i = pool.pop(fresh[0] if fresh else 0)
        chosen.append((text, refs[i].index))
        used_targets.add(i)
    return chosen
