"""Find the handwriting on a picture and leave the paper behind (pure functions on uint8 arrays).

A photo of a notebook holds more than ink: ruled and squared lines, a margin line, uneven light,
specks and JPEG noise. Here, on a light-ink-on-dark copy of the picture ("light"):
  ink_darkness  subtracts the local paper level (a morphological opening at low resolution),
                so a shadow or a light fall-off is not ink;
  ink_threshold picks the level that separates strokes from paper and noise;
  ink_mask      the strokes, without paper lines (serve/lines.py), a form's printed boxes
                (serve/frames.py) or specks.
OpenCV does the filtering: its morphology, resizing and labelling run in C, several times faster
than the same steps in numpy, which matters since every request goes through them.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from serve.errors import NoDigit
from serve.frames import find_frames
from serve.lines import find_lines, remove_lines

# One thread per call: requests already run in parallel (workers x threads), and OpenCV's own
# thread pool would only fight them for the same cores.
cv2.setNumThreads(1)


def plain_opencv() -> None:
    """Run this thread's OpenCV calls without Intel IPP. On the small arrays of a request IPP's
    per-call set-up dominates: a 3x3 dilation of 112x112 takes 13 us with it and 4 us without,
    a histogram 46 us and 5 us; a 112x112 upload's preprocessing is ~25% faster, a 1,000x750
    page ~10%, with bit-identical results. The switch is per thread in OpenCV (a gthread
    worker's or the batcher's threads would keep IPP on), and costs ~0.1 us, so every request
    sets it on its own thread."""
    cv2.ipp.setUseIPP(False)

MIN_CONTRAST = 32  # grey levels between paper and ink below which we call the picture blank
LINE_CUT = 0.12  # paper lines are searched among pixels this dark (fraction of a stroke's darkness)
GRAIN_TAIL = 0.05  # the grain's histogram ends where it falls to this fraction of its peak
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
    # The paper is taken to go on past the frame for a window as it is at the edge: a shadow that
    # reaches the edge only as a sliver or a corner's wedge is then paper in shade, not ink. A stroke
    # crossing the edge stays as narrow as it was, and ink; one lying along the very edge is lost.
    padded = cv2.copyMakeBorder(small, k, k, k, k, cv2.BORDER_REPLICATE)
    opened = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)  # (beyond the padding: ignored)
    opened = cv2.blur(opened, (max(1, k // 2) | 1,) * 2)[k:-k, k:-k]
    return cv2.resize(opened, (w, h), interpolation=cv2.INTER_LINEAR) if f > 1 else opened


def ink_darkness(light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(darkness, paper): how far each pixel is above its local paper level."""
    window = max(9, round(0.3 * min(light.shape)))  # wider than a stroke of a digit filling the picture
    paper = background(light, window)
    return cv2.subtract(light, paper), paper


def ink_threshold(darkness: np.ndarray) -> tuple[float, float]:
    """(threshold, level): the cut between ink and paper and the darkness of a full stroke."""
    return ink_levels(darkness)[:2]


def ink_levels(darkness: np.ndarray) -> tuple[float, float, float]:
    """(threshold, level, noise): the cut between ink and paper, the darkness of a full stroke,
    and the darkness paper noise reaches (noise_floor).

    The level is the brightest value that survives a 3x3 median (one hot pixel or a JPEG speck is
    not a stroke); NoDigit when it is too close to the paper to be ink.
    """
    level = float(cv2.medianBlur(darkness, 3).max())
    if level < MIN_CONTRAST:
        raise NoDigit("no digit found: the image is blank or has too little contrast")
    # Above JPEG noise and paper grain (their spread, measured on the paper itself), and well below
    # a stroke's core so that faint pen and anti-aliased edges stay ink.
    noise = noise_floor(darkness, level)
    return max(0.25 * level, noise, MIN_CONTRAST * 0.5), level, noise


def noise_floor(darkness: np.ndarray, level: float) -> float:
    """Darkness that JPEG noise and paper grain reach: four times their spread on the paper (the
    pixels darker than a quarter of a stroke), from the histogram: one pass in C.

    The grain is the histogram's first bump: its spread is measured up to where the bump has
    fallen to 5% of its height. Faint grid lines are among those pixels too, a second bump
    further up that would inflate the spread until the noise floor sat on the lines themselves
    and they broke into dashes where they are searched."""
    hist = cv2.calcHist([darkness], [0], None, [256], [0, 256]).ravel()
    hist = hist[: int(np.ceil(level * 0.25))].astype(np.float64)
    if hist.size < 2 or hist.sum() == 0:
        return 0.0
    # Bin 0 holds everything at or below the paper level: the bump's height is read beside it.
    low = np.flatnonzero(hist[1:] < GRAIN_TAIL * hist[1:].max())
    top = int(low[0]) + 1 if low.size else hist.size
    h, values = hist[:top], np.arange(top, dtype=np.float64)
    mean = (h * values).sum() / h.sum()
    return float(np.sqrt(max(0.0, (h * values**2).sum() / h.sum() - mean**2))) * 4


def ink_mask(light: np.ndarray) -> Ink:
    """A light-ink picture -> the ink found on it, without paper lines, shading or noise."""
    darkness, paper = ink_darkness(light)
    threshold, level, noise = ink_levels(darkness)
    mask = darkness > threshold
    if cv2.countNonZero(mask.view(np.uint8)) > MAX_INK_FRACTION * mask.size:
        raise NoDigit("no digit found: the picture is covered in texture, not handwriting")
    # Paper lines are often fainter than the pen, broken into dashes by the ink threshold: they are
    # searched on a fainter cut, where they are whole.
    faint = darkness > max(noise, LINE_CUT * level)
    horizontal, vertical = find_lines(faint)
    mask, lines = taken_out(mask, darkness, horizontal, vertical)
    # A form's boxes are searched on the same cut with the paper lines still in (a row of boxes
    # apart has its tops and bottoms in line, which may be found as ruling); not on squared
    # paper, whose grid is boxes already taken out.
    if not (horizontal.any() and vertical.any()):
        mask, frames = taken_out(mask, darkness, *find_frames(faint, horizontal))
        lines = lines | frames
    return Ink(darkness=darkness, paper=paper, mask=drop_lone_pixels(mask), lines=lines, level=level)


def taken_out(mask: np.ndarray, darkness: np.ndarray, horizontal: np.ndarray, vertical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask, lines): the ink without these lines, widened by a pixel to take their edges, and the
    strokes that crossed them mended (serve/lines.py's remove_lines); the lines as taken out."""
    if not (horizontal.any() or vertical.any()):
        return mask, horizontal
    horizontal = cv2.dilate(horizontal.view(np.uint8), np.ones((3, 1), np.uint8)) > 0
    vertical = cv2.dilate(vertical.view(np.uint8), np.ones((1, 3), np.uint8)) > 0
    return remove_lines(mask, darkness, horizontal & mask, vertical & mask), horizontal | vertical


def drop_lone_pixels(mask: np.ndarray) -> np.ndarray:
    """A pixel with no set neighbour is noise, not ink (a 3x3 opening would also thin real strokes)."""
    u8 = mask.view(np.uint8)
    ring = np.ones((3, 3), np.uint8)
    ring[1, 1] = 0
    return mask & (cv2.dilate(u8, ring, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0)
