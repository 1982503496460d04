"""Group a mask of ink into digits, in reading order (pure functions on numpy arrays).

The ink's connected pieces are not digits one to one: a "5" whose top bar was lifted, or a broken
"8", is two pieces; two digits written close together are one. And not every piece is a digit: a
speck, a dot, a dash or a tick beside the number are not. So:
  pieces       connected components of the mask, with their boxes;
  group        pieces stacked above one another (overlapping in x, close in y) form one digit,
               small pieces join the digit they sit on, the rest that is small is dropped;
  text_lines   digits of similar height side by side are one line of text; lines top to bottom;
  readings     a group wider than a digit may be digits that touch: cut along the paths that
               cross the least ink. Its shapes favour one reading (a thin neck: digits that
               touch; none: one wide digit), but the other readings are offered too, and the
               model's belief chooses (serve/reading.py's `choose`).
Boxes are (x, y, w, h) in the mask's pixels.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from serve.components import components

MIN_HEIGHT = 6  # pixels of the working picture: anything shorter is a speck
MARK_HEIGHT = 0.45  # a group shorter than this fraction of the line's digits is a mark, not a digit
MINOR_AREA = 0.12  # a piece with less ink than this fraction of the largest piece is a fragment
ATTACH = 0.15  # a fragment joins a digit within this fraction of the digit height (a tick under it is further)
STACK_GAP = 0.45  # pieces overlapping in x and this close in y (fraction of digit height) are one digit
STACK_SMALL = 0.4  # ... but a piece shorter than this fraction of the other
STACK_SMALL_GAP = 0.15  # ... must be this close
STACK_WIDER = 4.0  # ... unless one is more than this many times as wide as the other
CROSS = 0.2  # pieces overlapping in y and this much in x (fraction of the narrower), no wider together than a digit, are one
TOUCH = 0.05  # boxes this close (fraction of height) touch
SHORT = 0.65  # a piece shorter than this fraction of its neighbour is not a digit beside it
WIDE = 1.4  # a group wider than this many times its height is digits that touch
PART_HEIGHT = 0.6  # each digit cut from touching digits is at least this fraction of their height
PART_MIN = 0.6  # ... and no reading offers digits shorter than this fraction (a loop or a bar cut off)
NEIGHBOURS_WIDE = 1.45  # ... or this many times as wide as the digits beside it
REMNANT_TALL = 1.8  # a thin upright this many times the median group's height is a line, not a "1"
REMNANT_THIN = 0.12  # ... when no wider than this fraction of its height
NECK = 1.2  # a cut between touching digits crosses at most this many stroke widths of ink (+1 px)
DIGIT_ASPECT = 0.72  # a typical handwritten digit's width over its height
CUT_OFFSETS = (-0.3, 0.3)  # other places a cut between touching digits is looked for (digit widths)
CUT_REACH = 0.2  # ... within this much of a digit width
OFFER_CUT = 0.85  # a group this much wider than tall, with digits beside it, may be two that touch:
OFFER_ALONE = 1.15  # ... or this much, alone on its line (a lone "0" or "4" is often wider than tall)
SPUR = 0.3  # a thin straight stroke sticking out of a group sideways, this long (fraction of its height),
SPUR_MIDDLE = 1 / 3  # ... from the middle third of its height (a "7"'s bar is in its top third, a "2"'s foot in its bottom one)
SPUR_THIN = 0.2  # ... thin: one run of ink in each of its columns, at most this fraction of the group's height
UNDER_REACH = 0.3  # a line drawn under a digit and touching its foot reaches this far past the rest's side (fraction of its height)
UNDER_REACH_BOTH = 0.2  # ... or this far past both sides (a "1"'s base reaches out less)
UNDER_WIDER = 1.3  # ... and its foot rows are this many times as wide as the rest (a "2"'s foot is about as wide as its body)


@dataclass
class Segment:
    box: tuple[int, int, int, int]  # x, y, w, h
    mask: np.ndarray  # bool [h, w]: this digit's ink inside its box
    line: int = 0  # line of text, counted from the top
    choice: int = -1  # the ambiguous group this is one reading of (-1: the ink has one reading)
    option: int = 0  # which reading of it: 0 is the one the shapes favour


def pieces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, stats): the 8-connected components of the mask; stats rows are x, y, w, h, area
    (row 0, the background, included)."""
    _, labels, stats = components(mask)
    return labels, stats


def _union(a, b):
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def _x_overlap(a, b) -> int:
    return min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])


def _y_gap(a, b) -> int:
    return max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3])


def group(stats: np.ndarray) -> list[tuple[tuple[int, int, int, int], list[int]]]:
    """Pieces -> [(box, piece labels)]: one entry per digit candidate, small fragments attached."""
    ids = [i for i in range(1, len(stats)) if stats[i, 4] >= 2]
    if not ids:
        return []
    biggest = max(stats[i, 4] for i in ids)
    major = [i for i in ids if stats[i, 4] >= MINOR_AREA * biggest]
    boxes = {i: tuple(int(v) for v in stats[i, :4]) for i in ids}
    ref = float(statistics.median(boxes[i][3] for i in major)) if major else 1.0
    # Stacked major pieces are parts of one digit: merge until nothing changes.
    groups = [(boxes[i], [i]) for i in major]
    merged = True
    while merged:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                ba, bb = groups[a][0], groups[b][0]
                narrow = min(ba[2], bb[2])
                tall, short = max(ba[3], bb[3]), min(ba[3], bb[3])
                # (Parts of one digit are of a digit's width: a flat piece many times wider than the
                # other is a paper line left in, or a stroke under the number, not its bar.)
                gap = STACK_SMALL_GAP if short < STACK_SMALL * tall else STACK_GAP
                stacked = (_x_overlap(ba, bb) >= 0.5 * narrow and _y_gap(ba, bb) < gap * max(tall, ref * 0.5)
                           and max(ba[2], bb[2]) <= STACK_WIDER * max(narrow, 0.5 * short))
                # A stroke that came loose beside the body (a "4"'s upright, a "5"'s bar): boxes that
                # touch, one much shorter. Two digits side by side are about equally tall.
                beside = -_x_overlap(ba, bb) <= TOUCH * tall and short < SHORT * tall and _y_gap(ba, bb) < 0
                # Overlapping pieces that together are no wider than a digit: a digit in two strokes.
                union = _union(ba, bb)
                crossed = _x_overlap(ba, bb) >= CROSS * narrow and union[2] <= 1.1 * union[3] and _y_gap(ba, bb) < 0
                if stacked or beside or crossed:
                    groups[a] = (_union(ba, bb), groups[a][1] + groups[b][1])
                    del groups[b]
                    merged = True
                    break
            if merged:
                break
    # Fragments (a lifted bar, a dot of a broken stroke) join the digit they sit over or under.
    for i in ids:
        if i in major:
            continue
        box, best, dist = boxes[i], None, None
        for g, (gbox, _) in enumerate(groups):
            if _x_overlap(box, gbox) < 0.5 * box[2]:
                continue
            d = max(0, _y_gap(box, gbox))
            if d <= ATTACH * gbox[3] and (dist is None or d < dist):
                best, dist = g, d
        if best is not None:
            gbox, members = groups[best]
            groups[best] = (_union(gbox, box), members + [i])
    return groups


def drop_line_remnants(groups: list) -> list:
    """Groups without the pieces of paper line that line removal missed: thin uprights far taller
    than the other ink (a margin line, a grid line near the edge). Left in, one would also set
    the height marks are judged by, and every digit beside it would be dropped as a mark."""
    if len(groups) < 2:
        return groups
    heights = [b[3] for b, _ in groups]
    others = [float(statistics.median(heights[:i] + heights[i + 1 :])) for i in range(len(groups))]  # the rest of the ink
    remnant = [b[3] >= REMNANT_TALL * o and b[2] <= REMNANT_THIN * b[3] for (b, _), o in zip(groups, others)]
    kept = [g for g, r in zip(groups, remnant) if not r]
    return kept or groups


def text_lines(boxes: list[tuple[int, int, int, int]]) -> list[list[int]]:
    """Indices of boxes by line of text (top to bottom), each line left to right."""
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][1] + boxes[i][3] / 2)
    lines: list[list[int]] = []
    spans: list[tuple[float, float]] = []
    for i in order:
        x, y, w, h = boxes[i]
        for n, (top, bottom) in enumerate(spans):
            if min(bottom, y + h) - max(top, y) >= 0.5 * min(h, bottom - top):
                lines[n].append(i)
                spans[n] = (min(top, y), max(bottom, y + h))
                break
        else:
            lines.append([i])
            spans.append((y, y + h))
    by_top = sorted(range(len(lines)), key=lambda n: spans[n][0])
    return [sorted(lines[n], key=lambda i: boxes[i][0]) for n in by_top]


def digits_across(mask: np.ndarray, height: float, digit_width: float | None = None) -> int:
    """How many digits a group's mask holds side by side, judged by its width alone (1: one).
    `digit_width`: the typical width of the digits beside it, when there are some."""
    w = mask.shape[1]
    if digit_width is not None and w > NEIGHBOURS_WIDE * digit_width and w > 0.8 * height:
        return int(np.clip(round(w / digit_width), 2, 8))
    if w > WIDE * height:
        return int(np.clip(round(w / (DIGIT_ASPECT * height)), 2, 8))
    return 1


def cut_into(mask: np.ndarray, k: int, offset: float = 0.0, reach: float = 0.4) -> tuple[list[np.ndarray], float]:
    """(parts, ink): the mask cut into k digits, each a mask of the group's shape, along the path
    that crosses the least ink near each expected boundary; and the most ink one cut crossed.

    Touching digits often overlap (a "6" whose loop reaches under the next digit's stroke), so
    no straight column separates them: the cut is a path from top to bottom that may bend a
    pixel per row, slipping between the two where they do not touch, crossing ink only where
    they do. Cut i is searched within `reach` of a digit's width around (i + offset) widths.
    """
    w = mask.shape[1]
    left_of = np.zeros(mask.shape, bool)  # pixels left of the last cut
    parts, step, last, worst = [], w / k, None, 0.0
    for i in range(1, k):
        at = (i + offset) * step
        lo, hi = int(at - reach * step), int(at + reach * step)
        if last is not None:
            lo = max(lo, int(last.min()) + 1)
        lo, hi = max(lo, 1), min(hi, w - 1)
        if hi - lo < 2:
            continue
        path, crossed = cut_path(mask[:, lo:hi], at - lo)
        worst = max(worst, crossed)
        path = path + lo
        left = np.arange(w)[None, :] < path[:, None]
        parts.append(mask & left & ~left_of)
        left_of |= left
        last = path
    parts.append(mask & ~left_of)
    return parts, worst


def neck(mask: np.ndarray) -> float:
    """The most ink a cut between two touching digits crosses: they meet in a stroke or two."""
    return NECK * _stroke_width(mask) + 1


def cut_path(mask: np.ndarray, centre: float) -> tuple[np.ndarray, float]:
    """(columns, ink): the top-to-bottom path through `mask` that crosses the least ink, moving at
    most a pixel sideways per row (a column per row), and the ink pixels it crosses. Among equal
    paths, the one nearest `centre` (where the boundary is expected) wins."""
    h, w = mask.shape
    ink = mask.astype(np.float32)
    # Ink dominates the cost; a small pull to the expected boundary breaks ties.
    pull = 0.02 * np.abs(np.arange(w, dtype=np.float32) - centre) / max(w, 1)
    # Each row's running cost sits between two walls no path may come from, so a row's three ways
    # in are slices of the row above; the row loop (a digit's height) does four small array ops,
    # and the path is traced back from the stored costs (the way in was the cheapest of the three,
    # the leftmost among equals, as np.argmin picks).
    acc = np.full((h, w + 2), 1e9, np.float32)
    acc[0, 1:-1] = ink[0] + pull
    best = np.empty(w, np.float32)
    for y in range(1, h):
        above, row = acc[y - 1], acc[y, 1:-1]
        np.minimum(above[:-2], above[1:-1], out=best)
        np.minimum(best, above[2:], out=best)
        np.add(best, ink[y], out=row)
        np.add(row, pull, out=row)
    path = np.empty(h, np.intp)
    path[-1] = int(np.argmin(acc[-1, 1:-1]))
    for y in range(h - 1, 0, -1):
        x = int(path[y])
        ways = acc[y - 1, x : x + 3].tolist()  # from x-1, x, x+1 (padded columns x .. x+2)
        path[y - 1] = x - 1 + ways.index(min(ways))
    return path, float(ink[np.arange(h), path].sum())


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing: twice its area over its perimeter."""
    mask = np.pad(mask, 1)  # the box is tight: its edges are the drawing's edges too
    edges = np.count_nonzero(np.diff(mask, axis=0)) + np.count_nonzero(np.diff(mask, axis=1))
    return 2.0 * np.count_nonzero(mask) / max(edges, 1)


def spur_columns(mask: np.ndarray) -> tuple[int, int]:
    """(left, right): how many columns at each side of a group are a mark drawn into it: a thin,
    straight stroke sticking out sideways from the middle third of the rest's height, at least SPUR
    of the group's height long (a dash or a line that runs into a digit; 0 where there is none). A
    digit's own bars are at its top or foot (a "7", a "2", a "5"), or end where its body does."""
    h, w = mask.shape
    m = int(np.ceil(SPUR * h))  # the columns a spur spans at least
    if w <= m:
        return 0, 0
    counts = np.count_nonzero(mask, axis=0)
    short = counts <= SPUR_THIN * h
    if not (short[:m].all() or short[w - m :].all()):  # most groups: their sides hold uprights or curves
        return 0, 0
    top, bottom = _ink_rows(mask)
    inked = counts > 0
    # A thin column: no ink, or one short run of it.
    thin = ~inked | ((counts == bottom - top + 1) & short)
    if not (thin[:m].all() or thin[w - m :].all()):
        return 0, 0
    out = []
    for left in (True, False):
        flags = thin if left else thin[::-1]
        n = int(np.argmin(flags)) if not flags.all() else 0  # thin columns from this side in
        span = slice(0, n) if left else slice(w - n, w)
        cols = np.flatnonzero(inked[span]) + span.start
        rows = np.flatnonzero(mask[:, n:].any(1) if left else mask[:, : w - n].any(1))
        if n < m or cols.size < 2 or rows.size == 0:
            out.append(0)
            continue
        body_top, body_h = rows[0], rows[-1] - rows[0] + 1
        centres = (top[cols] + bottom[cols]) / 2
        middle = body_top + SPUR_MIDDLE * body_h <= centres.mean() <= body_top + (1 - SPUR_MIDDLE) * body_h
        straight = centres.max() - centres.min() <= 0.2 * n + 2
        out.append(n if middle and straight else 0)
    return out[0], out[1]


def underline_rows(mask: np.ndarray) -> int:
    """How many rows at the foot of a group are a line drawn under it and touching it (0 where
    there is none): a thin stroke, level or tilted, whose columns past the rest of the group hold ink only
    in the bottom rows, reaching at least UNDER_REACH of the group's height beyond one side, or
    UNDER_REACH_BOTH beyond both. A digit's own foot (a "2", a "1"'s base) ends about where its
    body does."""
    h, w = mask.shape
    thick = max(2, int(SPUR_THIN * h))
    m, both = int(np.ceil(UNDER_REACH * h)), int(np.ceil(UNDER_REACH_BOTH * h))
    if w <= m or mask[: h - thick, :both].any() and mask[: h - thick, w - both :].any():  # most groups: ink above the foot at both sides
        return 0
    counts = np.count_nonzero(mask, axis=0)
    top, bottom = _ink_rows(mask)
    low = (counts > 0) & (top >= h - thick)  # columns with ink only in the bottom rows
    if low.all():  # a flat group (a dash)
        return 0
    n_left, n_right = (int(np.argmin(side)) for side in (low, low[::-1]))  # low columns from each side in
    if min(n_left, n_right) >= both:  # under the whole digit, out at both sides
        m = both
    elif max(n_left, n_right) < m:  # nothing reaching out far enough
        return 0
    foot = np.flatnonzero(mask[h - thick :].any(0))
    if foot[-1] - foot[0] + 1 < UNDER_WIDER * np.count_nonzero((counts > 0) & ~low):  # no wider than the rest: a digit's own foot
        return 0
    line = np.zeros(w, bool)  # the columns reaching out, on each side that reaches far enough
    line[: n_left if n_left >= m else 0] = True
    line[w - (n_right if n_right >= m else 0) :] = True
    far = line & ((np.arange(w) < m) | (np.arange(w) >= w - m))  # the reach that qualifies
    single = counts == bottom - top + 1  # one run of ink in the column
    if not single[far].all():  # near the digit a tail curling down over the line may add a run
        return 0
    # Under the digit the line hides in the digit's columns; a photo tilts it, so its top is carried
    # on along the slope of the part reaching out, to both ends of the group.
    line &= single
    cols = np.flatnonzero(line)
    slope = np.polyfit(cols, top[cols], 1)[0] if np.ptp(cols) else 0.0
    highest = min(top[line].min(), *(top[cols[0]] + slope * (end - cols[0]) for end in (0, w - 1)))
    return int(h - max(round(highest), h - 2 * thick))  # a steep or curved "line" is cut no deeper than twice its thickness


def _ink_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top, bottom): each column's first and last ink row (0 and h - 1 for an empty column, as
    argmax gives): a column holds one run of ink when its count is bottom - top + 1."""
    return np.argmax(mask, axis=0), mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0)


def _tight(mask: np.ndarray, box) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The box shrunk to the ink it holds, and the mask cut to it (None when empty)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    t, b, l, r = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    x, y = box[0], box[1]
    return (int(x + l), int(y + t), int(r - l), int(b - t)), mask[t:b, l:r]


def segment(mask: np.ndarray, alternatives: bool = True) -> list[Segment]:
    """A mask of ink -> its digits in reading order (marks, specks and fragments left out), with
    every reading of ambiguous ink; without `alternatives`, only the readings the shapes favour
    (/predict: no cut is searched that only the model could choose), except that the only group
    on the picture, cut into digits that touch, keeps its whole reading beside the cut: a lone
    wide "0" or "4" and two touching digits look alike, and only the model can tell them apart."""
    labels, stats = pieces(mask)
    groups = group(stats)
    if not groups:
        return []
    groups = drop_line_remnants(groups)
    tall = max(b[3] for b, _ in groups)
    groups = [(b, m) for b, m in groups if b[3] >= max(MIN_HEIGHT, MARK_HEIGHT * tall)]  # specks, dots, dashes, ticks
    # A digit's width is best judged against the other digits on its line: two that touch are
    # about twice as wide as their neighbours.
    lines = text_lines([b for b, _ in groups])
    width_of = {}
    accompanied = {i for members in lines if len(members) > 1 for i in members}
    for members in lines:
        widths = sorted(groups[i][0][2] for i in members)
        for i in members:
            width_of[i] = float(statistics.median(widths)) if len(widths) >= 3 else None
    found: list[Segment] = []
    choices = 0
    for n, (box, members) in enumerate(groups):
        x, y, w, h = box
        inside = labels[y : y + h, x : x + w]
        own = inside == members[0] if len(members) == 1 else np.isin(inside, members)  # isin costs ~0.1 ms
        whole = [(box, own)]
        left, right = spur_columns(own)
        under = underline_rows(own)
        if left or right or under:  # read without the stroke drawn into it too (the model chooses)
            trimmed = own.copy()
            trimmed[:, :left] = False
            trimmed[:, w - right :] = False
            trimmed[h - under :] = False
            box, own = _tight(trimmed, box)
            x, y, w, h = box
        readings = [[(box, own)]]
        k = digits_across(own, h, width_of[n])
        if k > 1 or alternatives and w > (OFFER_CUT if n in accompanied else OFFER_ALONE) * h:
            readings = _readings(own, box, max(k, 2), k > 1, alternatives)
            if not alternatives and len(groups) == 1 and len(readings[0]) > 1:
                readings.append([(box, own)])
        if left or right:
            readings.append(whole)
        elif under:  # a "2" with a long foot can look alike (~4% of MNIST's): the whole stays favoured
            readings.insert(0, whole)
        if len(readings) == 1:
            found.extend(Segment(box=b, mask=m) for b, m in readings[0])
            continue
        for option, reading in enumerate(readings):
            found.extend(Segment(box=b, mask=m, choice=choices, option=option) for b, m in reading)
        choices += 1
    return _in_reading_order(found)


def _readings(own: np.ndarray, box, k: int, wide: bool, alternatives: bool) -> list[list[tuple]]:
    """The ways to read a group that may be one wide digit or k digits that touch, the one its
    shapes favour first: whole, cut into k near the expected boundaries, cut elsewhere (the
    least-ink path can slip through a gap inside one digit rather than between two), and into
    k + 1 (three touching digits can be as wide as two). Without `alternatives`, only the first."""
    h = box[3]
    whole = [(box, own)]
    cuts = [cut_into(own, k)]
    if alternatives:
        cuts += [cut_into(own, k, o, CUT_REACH) for o in CUT_OFFSETS]
        if wide:
            cuts.append(cut_into(own, k + 1))
    splits, seen, touching = [], set(), False
    for n, (cut, crossed) in enumerate(cuts):
        parts = [p for p in (_tight(part, box) for part in cut) if p is not None and p[0][3] >= MIN_HEIGHT]
        key = tuple(p[0] for p in parts)
        if len(parts) < 2 or key in seen or min(p[0][3] for p in parts) < PART_MIN * h:
            continue
        seen.add(key)
        splits.append(parts)
        # Digits that touch meet in a thin neck and are each about as tall as the pair; a wide
        # digit cut in two is not (the bar of a "7" or a "5" cut off its body).
        touching |= n == 0 and wide and crossed <= neck(own) and min(p[0][3] for p in parts) >= PART_HEIGHT * h
    readings = [splits[0], whole] + splits[1:] if touching else [whole] + splits
    return readings if alternatives else readings[:1]


def _in_reading_order(found: list[Segment]) -> list[Segment]:
    """The segments by line of text, each line left to right, their `line` set. Lines are found
    from the favoured readings; another reading of the same ink goes on its line."""
    first = favoured(found)
    line_of = {}
    for n, members in enumerate(text_lines([s.box for s in first])):
        for i in members:
            first[i].line = n
            line_of.setdefault(first[i].choice, n)
    for s in found:
        if s.option != 0:
            s.line = line_of[s.choice]
    return sorted(found, key=lambda s: (s.line, s.box[0], s.option))


def favoured(segments: list[Segment]) -> list[Segment]:
    """Of each ambiguous group, the reading its shapes favour (what the picture holds before the
    model is asked which reading it believes)."""
    return [s for s in segments if s.option == 0]


def merge(segments: list[Segment]) -> Segment:
    """Several segments as one: their union box, their masks together."""
    x0, y0 = min(s.box[0] for s in segments), min(s.box[1] for s in segments)
    x1 = max(s.box[0] + s.box[2] for s in segments)
    y1 = max(s.box[1] + s.box[3] for s in segments)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for s in segments:
        x, y, w, h = s.box
        mask[y - y0 : y - y0 + h, x - x0 : x - x0 + w] |= s.mask
    return Segment(box=(x0, y0, x1 - x0, y1 - y0), mask=mask)
