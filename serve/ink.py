"""Find the handwriting on a picture and leave the paper behind (pure functions on uint8 arrays).

A photo of a notebook holds more than ink: ruled and squared lines, a margin line, uneven light,
specks and JPEG noise. Here, on a light-ink-on-dark copy of the picture ("light"):
  ink_darkness  subtracts the local paper level (a morphological opening at low resolution),
                so a shadow or a light fall-off is not ink;
  ink_threshold picks the level that separates strokes from paper and noise;
  find_lines    finds ruled/squared/margin lines: long, thin runs that cross most of the picture,
                slightly tilted or curved;
  remove_lines  takes them out of the ink mask and mends strokes that crossed them.
OpenCV does the filtering: its morphology, resizing and labelling run in C, several times faster
than the same steps in numpy, which matters since every request goes through them.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from serve.errors import NoDigit

# One thread per call: requests already run in parallel (workers x threads), and OpenCV's own
# thread pool would only fight them for the same cores.
cv2.setNumThreads(1)

MIN_CONTRAST = 32  # grey levels between paper and ink below which we call the picture blank
LINE_SPAN = 0.85  # a paper line crosses nearly the whole picture; a digit's stroke does not
LINE_SEARCH_FROM = 64  # pixels: smaller pictures are one digit, not a sheet with lines
LINE_SQUEEZE = 4  # lines are searched on a copy squeezed this much along them: tilt becomes ~flat
LINE_CUT = 0.12  # paper lines are searched among pixels this dark (fraction of a stroke's darkness)
LINE_COVER = 0.8  # a line has pixels near its curve in this fraction of the columns it spans
LINE_THICK = 6  # pixels per column above which a long run is a scribble, not a paper line
MAX_INK_FRACTION = 0.5  # more "ink" than this is texture, not writing (a bold digit filling its picture: ~40%)


@dataclass(frozen=True)
class Ink:
    """What ink_mask found: the darkness map, the mask of strokes, and the lines taken out."""

    darkness: np.ndarray  # uint8, ink darkness above the local paper level
    paper: np.ndarray  # uint8, the local paper level itself
    mask: np.ndarray  # bool, strokes (lines, specks and noise removed)
    lines: np.ndarray  # bool, what was taken for paper lines
    level: float  # the darkness of a full stroke (for scaling the digit crops)


def background(light: np.ndarray, window: int) -> np.ndarray:
    """The local paper level of a light-ink image: an opening wider than any stroke, computed on a
    4x smaller copy (paper light varies slowly) and scaled back."""
    h, w = light.shape
    f = 4 if min(h, w) >= 64 else 1
    small = cv2.resize(light, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA) if f > 1 else light
    k = max(3, window // f) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    opened = cv2.morphologyEx(small, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_REPLICATE)
    opened = cv2.blur(opened, (max(1, k // 2) | 1,) * 2)
    return cv2.resize(opened, (w, h), interpolation=cv2.INTER_LINEAR) if f > 1 else opened


def ink_darkness(light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(darkness, paper): how far each pixel is above its local paper level."""
    window = max(9, round(0.3 * min(light.shape)))  # wider than a stroke of a digit filling the picture
    paper = background(light, window)
    return cv2.subtract(light, paper), paper


def ink_threshold(darkness: np.ndarray) -> tuple[float, float]:
    """(threshold, level): the darkness of a full stroke and the cut between ink and paper.

    The level is the brightest value that survives a 3x3 median (one hot pixel or a JPEG speck is
    not a stroke); NoDigit when it is too close to the paper to be ink.
    """
    level = float(cv2.medianBlur(darkness, 3).max())
    if level < MIN_CONTRAST:
        raise NoDigit("no digit found: the image is blank or has too little contrast")
    # Above JPEG noise and paper grain (their spread, measured on the paper itself), and well below
    # a stroke's core so that faint pen and anti-aliased edges stay ink.
    return max(0.25 * level, noise_floor(darkness, level), MIN_CONTRAST * 0.5), level


def noise_floor(darkness: np.ndarray, level: float) -> float:
    """Darkness that JPEG noise and paper grain reach: four times their spread on the paper."""
    paper = darkness[darkness < level * 0.25]
    return float(paper.std()) * 4 if paper.size else 0.0


def _runs_across(mask: np.ndarray, span: float) -> np.ndarray:
    """Pixels of `mask` on horizontal lines that, joined through small gaps and a slight tilt or
    curve, cross at least `span` of the width.

    Searched on a copy squeezed along x: a tilt of a few degrees becomes one of a fraction of a
    degree, so a 1-pixel-high opening keeps long runs of it, and runs on neighbouring rows join.
    A digit's stroke touching a line joins it too, so each line is then followed by a curve
    fitted through its runs, and only the pixels near that curve are the line.
    """
    h, w = mask.shape
    sw = max(1, w // LINE_SQUEEZE)
    squeezed = cv2.resize(mask.view(np.uint8) * 255, (sw, h), interpolation=cv2.INTER_AREA) > 64
    seg = max(3, sw // 24)
    pieces = cv2.morphologyEx(squeezed.view(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (seg, 1)))
    # Cheap refusal first (most pictures hold no line): a line tilted up to ~3 degrees keeps its
    # pixels within a band of rows 6% of the width high; no band holding enough means no line.
    band = max(3, int(0.06 * w))
    per_row = np.count_nonzero(pieces, axis=1).astype(np.float32)
    if np.convolve(per_row, np.ones(band, np.float32), mode="same").max() < span * sw:
        return np.zeros_like(mask)
    # Joined across gaps: where the pen crossed it, a line may be broken for a digit's width.
    joined = cv2.dilate(pieces, np.ones((1, max(seg, sw // 6)), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    long_ = [i for i in range(1, n) if stats[i, cv2.CC_STAT_WIDTH] >= span * sw]
    if not long_:
        return np.zeros_like(mask)
    ys, xs = np.nonzero(pieces)
    owner = labels[ys, xs]
    cols = np.arange(sw, dtype=np.float32)
    rows = np.arange(h, dtype=np.float32)[:, None]
    line_small = np.zeros((h, sw), bool)
    # Lines on a sheet are parallel: the slope of those found alone lets lines that a digit joined
    # into one component be told apart (their points at a common offset from that slope).
    slopes, tangled = [], []
    for i in long_:
        px, py = xs[owner == i].astype(np.float32), ys[owner == i].astype(np.float32)
        if np.ptp(px) + 1 < span * sw:
            continue  # long only by the joining: the runs themselves do not cross the picture
        found = _follow(px, py, cols, rows)
        if found is None:
            tangled.append((i, px, py))
            continue
        line_small |= _within(found[0], stats[i], seg)
        slopes.append(found[2])
    slope = float(np.median(slopes)) if slopes else 0.0
    for i, px, py in tangled:
        offset = np.round(py - slope * px).astype(np.intp)
        offset -= offset.min()
        votes = np.convolve(np.bincount(offset), np.ones(3), mode="same")
        for peak in np.flatnonzero(votes >= span * sw):
            if votes[peak] < votes[max(0, peak - 1) : peak + 2].max():
                continue  # not the top of its peak
            near = np.abs(offset - peak) <= 3
            found = _follow(px[near], py[near], cols, rows)
            if found is not None:
                line_small |= _within(found[0], stats[i], seg)
    line_small &= squeezed
    line = cv2.resize(line_small.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    # Back at full width, a squeezed pixel covers LINE_SQUEEZE pixels: widen by one so the ends are covered.
    line = cv2.dilate(line.view(np.uint8), np.ones((1, LINE_SQUEEZE + 1), np.uint8)) > 0
    return line & mask


def _follow(xs: np.ndarray, ys: np.ndarray, cols: np.ndarray, rows: np.ndarray):
    """(band, near, slope): the band [h, w] around the curve y = f(x) (a gentle quadratic) through the
    points of one line, and which points lie on it. Fitted twice: the second time without the
    points far off the first curve (a stroke joined to the line). None when not a thin line."""
    if xs.size < 8 or np.ptp(xs) < 4:
        return None
    # Fitted through the columns where the line is alone (a few pixels thick): where a digit
    # joins it, a column holds many more, and the digit must not pull the curve.
    col = xs.astype(np.intp)
    count = np.bincount(col)
    keep = count[col] <= LINE_THICK
    if np.unique(col[keep]).size < 0.25 * np.unique(col).size:
        return None  # mostly thick: a scribble or a filled shape, not a ruled line
    for _ in range(2):
        coef = np.polyfit(xs[keep], ys[keep], 2 if np.ptp(xs) > 30 else 1)
        off = np.abs(ys - np.polyval(coef, xs))
        keep = off <= max(1.5, 2.0 * float(np.median(off[keep])))
    thickness = np.count_nonzero(keep) / max(1, np.unique(xs[keep]).size)
    if thickness > LINE_THICK:
        return None  # a scribble or a filled shape, not a ruled line
    half = thickness / 2 + 1.0
    near = np.abs(ys - np.polyval(coef, xs)) <= half + 1.0
    if np.unique(col[near]).size < LINE_COVER * (np.ptp(col) + 1):
        return None  # gaps all along: strokes of digits in a row, not one line
    centre = np.polyval(coef, cols)[None, :]
    slope = float(np.polyval(np.polyder(coef), float(np.median(xs))))
    return np.abs(rows - centre) <= half, near, slope


def _within(band: np.ndarray, stat: np.ndarray, margin: int) -> np.ndarray:
    """The band cut to the columns its component covers (a curve is not extrapolated)."""
    x0, x1 = stat[cv2.CC_STAT_LEFT], stat[cv2.CC_STAT_LEFT] + stat[cv2.CC_STAT_WIDTH]
    band[:, : max(0, x0 - margin)] = False
    band[:, x1 + margin :] = False
    return band


def find_lines(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal, vertical) masks of paper lines: ruled and squared lines, margin lines."""
    if min(mask.shape) < LINE_SEARCH_FROM:
        return np.zeros_like(mask), np.zeros_like(mask)  # a thumbnail of one digit: no room for ruling
    horizontal = _runs_across(mask, LINE_SPAN)
    vertical = _runs_across(np.ascontiguousarray(mask.T), LINE_SPAN).T
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
    line_level = float(np.median(darkness[lines]))
    out |= lines & (darkness > line_level * 1.5 + 8)
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
    return int(min(15, max(1, round(horizontal.sum() / length / count))))


def ink_mask(light: np.ndarray) -> Ink:
    """A light-ink picture -> the ink found on it, without paper lines, shading or noise."""
    darkness, paper = ink_darkness(light)
    threshold, level = ink_threshold(darkness)
    mask = darkness > threshold
    if mask.mean() > MAX_INK_FRACTION:
        raise NoDigit("no digit found: the picture is covered in texture, not handwriting")
    # Paper lines are often fainter than the pen, broken into dashes by the ink threshold: they are
    # searched on a fainter cut, where they are whole, then widened by a pixel to take their edges.
    horizontal, vertical = find_lines(darkness > max(noise_floor(darkness, level), LINE_CUT * level))
    horizontal = cv2.dilate(horizontal.view(np.uint8), np.ones((3, 1), np.uint8)) > 0
    vertical = cv2.dilate(vertical.view(np.uint8), np.ones((1, 3), np.uint8)) > 0
    clean = remove_lines(mask, darkness, horizontal & mask, vertical & mask)
    # A lone pixel is noise, not ink: a 3x3 opening would also thin real strokes, so only pixels
    # with no set neighbour go.
    neighbours = cv2.filter2D(clean.view(np.uint8), -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT)
    clean = clean & (neighbours > 1)
    return Ink(darkness=darkness, paper=paper, mask=clean, lines=horizontal | vertical, level=level)
