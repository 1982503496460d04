"""Paper lines: ruled, squared and margin lines found in an ink mask and taken out of it (pure
functions on bool arrays).

A line is a long, thin run that crosses most of the picture, slightly tilted or curved by the
photo; a digit's stroke touching it must not pull it off its course, and a stroke crossing it is
mended once it is taken out:
  find_lines    horizontal and vertical lines crossing LINE_SPAN of the picture;
  runs_across   the search itself, on any mask and any span (serve/frames.py looks for the
                printed lines of a form's boxes with it, across one piece of ink);
  remove_lines  takes lines out of the ink mask and mends the strokes that crossed them.
"""
from __future__ import annotations

import statistics

import cv2
import numpy as np

from serve.components import components

LINE_SPAN = 0.85  # a paper line crosses nearly the whole picture; a digit's stroke does not
LINE_SEARCH_FROM = 64  # pixels: smaller pictures are one digit, not a sheet with lines
# Lines are searched on a copy squeezed this much along them, so a tilt becomes ~flat: 4, the
# columns squeeze() reads as one uint32.
LINE_SQUEEZE = np.dtype(np.uint32).itemsize
LINE_COVER = 0.8  # a line has pixels near its curve in this fraction of the columns it spans
LINE_THICK = 6  # pixels per column above which a long run is a scribble, not a paper line


def runs_across(mask: np.ndarray, span: float) -> np.ndarray:
    """Pixels of `mask` on horizontal lines that, joined through small gaps and a slight tilt or
    curve, cross at least `span` of the width.

    Searched on a copy squeezed along x: a tilt of a few degrees becomes one of a fraction of a
    degree, so a 1-pixel-high opening keeps long runs of it, and runs on neighbouring rows join.
    A digit's stroke touching a line joins it too, so each line is then followed by a curve
    through the centres of its columns where it is alone, and only the pixels near that curve
    are the line. All lines are fitted at once, from per-(line, column) sums: a sheet of squared
    paper has dozens of lines, and a loop of numpy calls per line cost milliseconds.
    """
    h, w = mask.shape
    squeezed = squeeze(mask)
    sw = squeezed.shape[1]
    seg = max(3, sw // 24)
    pieces = cv2.morphologyEx(squeezed.view(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (seg, 1)))
    if not _may_hold_lines(pieces, span, w):
        return np.zeros_like(mask)
    # Joined across gaps: where the pen crossed it, a line may be broken for a digit's width.
    joined = cv2.dilate(pieces, np.ones((1, max(seg, sw // 6)), np.uint8))
    n, labels, stats = components(joined)
    if not (stats[1:, cv2.CC_STAT_WIDTH] >= span * sw).any():
        return np.zeros_like(mask)
    ys, xs = pixels(pieces)
    lab = labels[ys, xs]
    # The runs themselves (not only the joining) must cross the picture.
    first = np.full(n, sw, np.intp)
    last = np.full(n, -1, np.intp)
    np.minimum.at(first, lab, xs)
    np.maximum.at(last, lab, xs)
    candidates = np.flatnonzero(last - first + 1 >= span * sw)
    curves = _fit_lines(lab, xs, ys, n, sw, candidates, span)
    line_small = _bands(squeezed, curves, stats)
    # Lines on a sheet are parallel: the slope of those found alone lets lines that a digit joined
    # into one component (the fit refused them) be told apart, at a common offset from that slope.
    tangled = [i for i in candidates if i not in curves]
    if tangled:
        slope = float(statistics.median(c[3] for c in curves.values())) if curves else _common_slope(lab, xs, ys, tangled)
        line_small |= _untangle(lab, xs, ys, tangled, slope, span, sw, stats, squeezed)
    line = np.repeat(line_small.view(np.uint8), LINE_SQUEEZE, axis=1)[:, :w]
    # Back at full width, a squeezed pixel covers LINE_SQUEEZE pixels: widen by one so the ends are covered.
    line = cv2.dilate(line, np.ones((1, LINE_SQUEEZE + 1), np.uint8)) > 0
    return line & mask


def squeeze(mask: np.ndarray) -> np.ndarray:
    """The mask squeezed LINE_SQUEEZE (4) times along x: a pixel per 4 columns, set where at least
    2 of its 4 are (the last group padded with unset columns). Each group of 4 bytes is read as
    one uint32 and its set bytes summed by one multiplication: ~10x faster than an area resize.
    A transposed view (vertical lines are searched on mask.T) is squeezed from the picture's own
    rows, 4 added at a time, and only the 4x smaller result is transposed: the same values, ~3x
    faster on a page than copying the strided view first."""
    if not mask.flags.c_contiguous and mask.T.flags.c_contiguous:
        rows = mask.T.view(np.uint8)
        padded = np.zeros((-(-rows.shape[0] // LINE_SQUEEZE) * LINE_SQUEEZE, rows.shape[1]), np.uint8)
        padded[: rows.shape[0]] = rows
        total = padded[0::LINE_SQUEEZE].copy()
        for k in range(1, LINE_SQUEEZE):
            total += padded[k::LINE_SQUEEZE]
        return np.ascontiguousarray((total >= 2).T)
    h, w = mask.shape
    u8 = np.zeros((h, -(-w // LINE_SQUEEZE) * LINE_SQUEEZE), np.uint8)
    u8[:, :w] = mask
    return (u8.view(np.uint32) * np.uint32(0x01010101)) >> np.uint32(24) >= 2  # the top byte: the 4 bytes' sum


def pixels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of a mask's set pixels, as np.nonzero gives them, ~5x faster: one flat search on
    the bool view (np.nonzero on a 2-D uint8 array is a slow general path)."""
    return np.divmod(np.flatnonzero(np.ascontiguousarray(mask).view(bool)), mask.shape[1])


def _untangle(lab, xs, ys, tangled, slope, span, sw, stats, squeezed) -> np.ndarray:
    """The lines inside components that join several (a digit touching two lines): their pixels
    sit at a common offset from the sheet's slope, one peak of offsets per line. Each peak's
    pixels become a line of their own, and all are fitted together."""
    sub_lab, sub_x, sub_y, owner = [], [], [], []
    for i in tangled:
        sel = lab == i
        px, py = xs[sel], ys[sel]
        offset = np.round(py - slope * px).astype(np.intp)
        offset -= offset.min()
        votes = np.convolve(np.bincount(offset), np.ones(3), mode="same")
        peaks = [p for p in np.flatnonzero(votes >= span * sw) if votes[p] >= votes[max(0, p - 1) : p + 2].max()]
        if not peaks:
            continue
        for peak in peaks:  # each peak takes all pixels near it: a stroke's peak beside a line must not thin it
            near = np.abs(offset - peak) <= 3
            sub_lab.append(np.full(int(near.sum()), len(owner), np.intp))
            sub_x.append(px[near])
            sub_y.append(py[near])
            owner.append(i)
    if not owner:
        return np.zeros(squeezed.shape, bool)
    curves = _fit_lines(np.concatenate(sub_lab), np.concatenate(sub_x), np.concatenate(sub_y), len(owner), sw,
                        np.arange(len(owner)), span)
    return _bands(squeezed, curves, stats[owner])


def _common_slope(lab, xs, ys, tangled) -> float:
    """The slope (on the squeezed copy) at which the pixels of components holding several lines
    line up best, when no line was found alone to give the sheet's slope: each line then makes
    one sharp peak of offsets y - slope x. Searched over tilts up to ~3.5 degrees."""
    sel = np.isin(lab, tangled)
    px, py = xs[sel].astype(np.float64), ys[sel].astype(np.float64)
    best, best_slope = -1.0, 0.0
    for slope in np.linspace(-0.06, 0.06, 25) * LINE_SQUEEZE:
        offset = np.round(py - slope * px).astype(np.intp)
        votes = np.bincount(offset - offset.min())
        sharp = float(np.sort(votes)[-8:].sum())  # the pixels on the few fullest offsets
        if sharp > best:
            best, best_slope = sharp, float(slope)
    return best_slope


def _may_hold_lines(pieces: np.ndarray, span: float, width: int) -> bool:
    """A cheap refusal first (most pictures hold no line): a line tilted up to ~3 degrees keeps
    its pixels within a band of rows 6% of the width high, and there covers most of the
    columns; no band covering that many (a digit's bars are short, however thick): no line."""
    band = max(3, int(0.06 * width))
    spread = cv2.dilate(pieces, np.ones((band, 1), np.uint8))  # each row: the columns its band covers
    per_row = spread.sum(1, dtype=np.int32)  # numpy's row sums: ~5x faster than cv2.reduce here
    # A line found later covers LINE_COVER of its own extent, which is at least `span` of the width.
    return int(per_row.max()) >= LINE_COVER * span * pieces.shape[1]


def _fit_lines(lab, xs, ys, n, sw, candidates, span) -> dict:
    """{component: (a, b, c, slope, half)}: the curve y = a x^2 + b x + c of each candidate that is
    a thin line, fitted (least squares, twice: the second time without the columns far off the
    first curve) through the centres of its columns where it is alone (one short run: where a
    digit joins the line, a column holds a taller run, or two, and the digit must not pull the
    curve); half its thickness. Candidates that are not thin lines crossing `span` of the width
    are left out."""
    if candidates.size == 0:
        return {}
    index = np.full(n, -1, np.intp)  # candidates renumbered 0..k-1: the sums below are [k, sw]
    index[candidates] = np.arange(candidates.size)
    lab = index[lab]
    sel = lab >= 0
    lab, xs, ys = lab[sel], xs[sel], ys[sel].astype(np.float64)
    n = candidates.size
    cell = lab * sw + xs
    count = np.bincount(cell, minlength=n * sw).reshape(n, sw)
    ysum = np.bincount(cell, ys, minlength=n * sw).reshape(n, sw)
    ysq = np.bincount(cell, ys * ys, minlength=n * sw).reshape(n, sw)
    present = count > 0
    c = np.maximum(count, 1)
    centre = ysum / c
    var = ysq / c - centre**2
    # One contiguous run of n pixels has a variance of (n^2 - 1) / 12; two runs far more.
    alone = present & (count <= LINE_THICK) & (var <= (count**2 - 1) / 12 + 0.5)
    ok = alone.sum(1) >= np.maximum(4, 0.25 * present.sum(1))  # else mostly thick: a scribble, a filled shape
    x = np.arange(sw, dtype=np.float64) / sw  # scaled: the normal equations stay well conditioned
    weight = alone & ok[:, None]
    for _ in range(2):
        coef = _weighted_quadratic(x, centre, weight)
        off = np.abs(centre - (coef[:, :1] * x**2 + coef[:, 1:2] * x + coef[:, 2:]))
        mean_off = (off * weight).sum(1) / np.maximum(weight.sum(1), 1)
        weight = weight & (off <= np.maximum(1.0, 2.0 * mean_off)[:, None])
    thickness = (count * weight).sum(1) / np.maximum(weight.sum(1), 1)
    curve = coef[:, :1] * x**2 + coef[:, 1:2] * x + coef[:, 2:]
    half = thickness / 2 + 1.0
    near = present & (np.abs(centre - curve) <= half[:, None] + 1.0 + np.sqrt(np.maximum(var, 0)))
    cols = np.arange(sw)
    first = np.where(present, cols, sw).min(1)
    last = np.where(present, cols, -1).max(1)
    used = weight.sum(1)
    line = ok & (used >= 3) & (thickness <= LINE_THICK) & (last - first + 1 >= span * sw)
    # Gaps all along (near the curve in too few of its columns): strokes of digits in a row, not one line.
    line &= near.sum(1) >= LINE_COVER * (last - first + 1)
    xm = (weight * x).sum(1) / np.maximum(used, 1)
    a, b, c0 = coef[:, 0], coef[:, 1], coef[:, 2]
    slope = (2 * a * xm + b) / sw
    return {int(candidates[i]): (a[i] / sw**2, b[i] / sw, c0[i], float(slope[i]), float(half[i]))
            for i in np.flatnonzero(line)}


def _weighted_quadratic(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """[n, 3] least-squares coefficients (a, b, c) of y = a x^2 + b x + c for each row of `y`, over
    the columns where `weight` is set; a straight line where too few columns span the fit."""
    wgt = weight.astype(np.float64)
    xk = x[:, None] ** np.arange(5)  # [sw, 5]: x^0 .. x^4
    powers = wgt @ xk
    rhs = (wgt * y) @ xk[:, [2, 1, 0]]
    m = np.stack([powers[:, [4, 3, 2]], powers[:, [3, 2, 1]], powers[:, [2, 1, 0]]], 1)
    m += np.eye(3) * 1e-9
    # Columns spread over little of the width cannot bend the curve: a straight line there.
    spread = np.where(weight, x, 2.0).min(1) - np.where(weight, x, -1.0).max(1)
    m[spread > -30 / max(x.size, 1), 0, 0] += 1e6
    return np.linalg.solve(m, rhs[..., None])[..., 0]


def _bands(squeezed: np.ndarray, curves: dict, stats: np.ndarray) -> np.ndarray:
    """The pixels of `squeezed` within half a line's thickness of its curve, over the columns its
    component covers (a curve is not extrapolated)."""
    out = np.zeros(squeezed.shape, bool)
    if not curves:
        return out
    ys, xs = pixels(squeezed)
    keys = list(curves)
    p = np.array([curves[k] for k in keys])  # a, b, c, slope, half
    x0 = stats[keys, cv2.CC_STAT_LEFT][:, None]
    x1 = x0 + stats[keys, cv2.CC_STAT_WIDTH][:, None]
    fx = xs[None, :].astype(np.float64)
    curve = p[:, :1] * fx**2 + p[:, 1:2] * fx + p[:, 2:3]
    on = (np.abs(ys[None, :] - curve) <= p[:, 4:5]) & (xs[None, :] >= x0) & (xs[None, :] < x1)
    hit = on.any(0)
    out[ys[hit], xs[hit]] = True
    return out


def find_lines(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal, vertical) masks of paper lines: ruled and squared lines, margin lines."""
    if min(mask.shape) < LINE_SEARCH_FROM:
        return np.zeros_like(mask), np.zeros_like(mask)  # a thumbnail of one digit: no room for ruling
    horizontal = runs_across(mask, LINE_SPAN)
    vertical = runs_across(mask.T, LINE_SPAN).T  # squeeze() copies the transposed view once
    return horizontal, vertical


def remove_lines(mask: np.ndarray, darkness: np.ndarray, horizontal: np.ndarray, vertical: np.ndarray) -> np.ndarray:
    """The ink mask without the lines; strokes that crossed a line are mended across it.

    A stroke crossing a line leaves ink on both sides of it: a closing across the line direction,
    restricted to the line's own pixels, puts those pixels back. Where the pen is darker than the
    line, the darker pixels on the line are ink too.
    """
    lines = horizontal | vertical
    if not lines.any():
        return mask
    out = mask & ~lines
    # Each direction by its own level: a red margin line is far darker than the blue ruling, and
    # would be "pen darker than the line" against the ruling's level.
    darker = lines.copy()
    for direction in (horizontal, vertical):
        if direction.any():
            darker &= ~direction | (darkness > float(np.median(darkness[direction])) * 1.5 + 8)
    out |= darker
    u8 = out.view(np.uint8)
    if horizontal.any():
        t = _thickness(horizontal)
        across = cv2.morphologyEx(u8, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (1, 2 * t + 5))) > 0
        out = out | (horizontal & across)
    if vertical.any():
        t = _thickness(vertical.T)
        across = cv2.morphologyEx(out.view(np.uint8), cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * t + 5, 1))) > 0
        out = out | (vertical & across)
    return out


def _thickness(horizontal: np.ndarray) -> int:
    """Typical thickness in pixels of horizontal lines: their area over their length."""
    rows = horizontal.any(1).view(np.int8)
    count = max(1, int(np.count_nonzero(np.diff(np.concatenate([[0], rows])) == 1)))  # separate lines
    length = max(1, np.count_nonzero(horizontal.any(0)))
    return int(min(15, max(1, round(np.count_nonzero(horizontal) / length / count))))
