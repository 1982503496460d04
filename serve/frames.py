"""Printed form fields: the boxes and comb teeth a form prints around each digit (pure functions
on bool masks).

A form asks for one digit per cell: a box per digit, a row of boxes sharing their sides, or a
comb (a base line with short teeth between the cells). Its printed lines are as dark as the pen
and too short to cross the picture, so the paper-line search (serve/lines.py) leaves them; and
they join the digits written in them into one piece of ink, so that a row of boxes reads as one
digit and a comb's teeth as "1"s. A frame is a piece of ink built of straight lines that meet at
their ends, which a digit is not:
  lines across  runs crossing FRAME_SPAN of the piece's width (serve/lines.py's search, on the
                piece alone);
  lines down    straight runs down it, DOWN_SPAN of its height or longer (a row of boxes
                photographed askew is taller than its sides, a comb's teeth are short);
  sides         lines down that join two lines across with their ends, one at each end of
                them and any between at even steps: a box's or a row of boxes' sides, which
                make the lines they join its top and bottom;
  teeth         lines down that end on a line across at one end, with one at each end of it
                (a comb closes its field), or at one end and three or more at even steps (a
                digit written over the other end), none longer than those (a "1" standing on
                the base line is taller than a tooth).
A digit's straight strokes rarely pass: a "7"'s bar is met by one stroke, a "3"'s bars are joined
on one side only, a "4"'s upright crosses its bar rather than ending on it, a "1" in its box is
off the even step of a row's sides.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from serve.components import components
from serve.lines import LINE_SQUEEZE, pixels, runs_across, squeeze

FRAME_SPAN = 0.85  # a frame's top, bottom or base crosses nearly its whole piece of ink
DOWN_SPAN = 0.12  # lines down are searched this long or longer (fraction of the piece's height)
FRAME_FROM = 24  # pixels: a piece shorter than this both ways is no frame (a digit of a small picture)
FRAME_SIDE = 8  # pixels: ... and one thinner than this either way has no line down (or across) it
TOOTH_FROM = 8  # pixels: the shortest comb tooth searched for
PRINTED = 5  # pixels: printed lines are no thicker on the searched copy (a pen's strokes mostly are)
THIN = 10  # a printed line is at least this many times as long as it is thick (a small digit's loop is not)
TOOTH_THIN = 3  # ... a comb's tooth this many times
SLANT = 0.07  # ... straight, off level (or upright) by no more than ~4 degrees,
GAP = 3  # ... and with paper this many pixels past its band on both sides
CLEAR = 0.5  # ... along this share of its length
MEET = 2  # pixels: a line down ends on a line across within this much of its band
CELL = 0.6  # a box is at least this many times as wide as it is tall
STEP = 0.1  # an inner side is this close to its even step (fraction of a cell's width)
TOOTH_SLACK = 1.3  # a comb's teeth are at most this many times as long as the teeth at its ends
EDGE = 2  # pixels: a piece this close to the picture's side runs on past it

def find_frames(mask: np.ndarray, ruling: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal, vertical): the pixels of `mask` on printed frame lines, each piece of ink
    searched on its own. Cheap refusals come first, since nearly every picture holds no form: no
    thin runs both ways on the picture (`may_hold_frames`), then per piece no ink standing at
    either end (`_closed`) or no straight, thin top or bottom edge (`_edged`). `ruling` is the
    paper lines found across the picture (serve/lines.py): a piece holding more than two of them
    is a ruled page; one or two may be a comb's base or a row of boxes cropped to its width,
    unless they run on to the picture's side as ruling does (a ruled line with a digit on it
    that stops short of the side is refused by `_closed`: it ends in the line alone)."""
    if not may_hold_frames(mask):
        return np.zeros_like(mask), np.zeros_like(mask)
    n, labels, stats = components(mask)
    rules = components(ruling)[1] if ruling.any() else None
    horizontal, vertical = np.zeros_like(mask), np.zeros_like(mask)
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        if max(w, h) < FRAME_FROM or min(w, h) < FRAME_SIDE:
            continue
        piece = labels[y : y + h, x : x + w] == i
        if rules is not None:
            held = np.count_nonzero(np.unique(rules[y : y + h, x : x + w][piece]))  # (label 0: no rule)
            short_of_sides = x > EDGE and x + w < mask.shape[1] - EDGE
            if held > (2 if short_of_sides else 0):
                continue
        if not (_closed(piece) and _edged(piece)):
            continue
        across = Lines.of(piece, runs_across(piece, FRAME_SPAN))
        if not across.printed.any():
            continue
        down = Lines.of(piece.T, runs_across(piece.T, DOWN_SPAN))
        found_across, found_down = framed(across, down)
        horizontal[y : y + h, x : x + w] |= found_across
        vertical[y : y + h, x : x + w] |= found_down.T
    return horizontal, vertical


def may_hold_frames(mask: np.ndarray) -> bool:
    """Whether the picture holds thin runs both ways, as printed lines are: across, FRAME_FROM
    long (on a copy squeezed along them, so a tilt keeps them whole), and down, TOOTH_FROM long,
    each with paper within PRINTED pixels on both sides. A look over the whole picture in a few
    filters, which pictures of digits alone nearly always fail (a pen's strokes are thicker), before
    any piece is labelled and searched."""
    u8 = mask.view(np.uint8)
    row, column = np.ones((1, PRINTED + 1), np.uint8), np.ones((PRINTED + 1, 1), np.uint8)
    # Down first (a ruled page has runs across). Ink on all PRINTED + 1 pixels up to a pixel, or
    # on from it, is a thick stroke's; what is left is thin. A tooth is short: a tilt hardly moves it.
    thin = cv2.subtract(u8, cv2.max(cv2.erode(u8, row, anchor=(PRINTED, 0)), cv2.erode(u8, row, anchor=(0, 0))))
    if not cv2.erode(thin, np.ones((TOOTH_FROM, 1), np.uint8)).any():
        return False
    thin = cv2.subtract(u8, cv2.max(cv2.erode(u8, column, anchor=(0, PRINTED)), cv2.erode(u8, column, anchor=(0, 0))))
    return bool(cv2.erode(squeeze(thin.view(bool)).view(np.uint8), np.ones((1, FRAME_FROM // LINE_SQUEEZE), np.uint8)).any())


@dataclass(frozen=True)
class Lines:
    """Lines across a piece of ink (lines down: across its transpose), labelled, with their stats
    (x, y, w, h, area), their bands column by column, and which have paper on both sides of them
    along CLEAR of their length (a band found inside a thick stroke has not)."""

    labels: np.ndarray
    stats: np.ndarray  # [n, 5], the lines only (no background row)
    upper: np.ndarray  # [n, width]: each line's first row in each column (past the picture where absent)
    lower: np.ndarray  # [n, width]: ... and its last
    clear: np.ndarray  # [n] bool

    @classmethod
    def of(cls, piece: np.ndarray, lines: np.ndarray) -> "Lines":
        n, labels, stats = components(lines)
        upper, lower = _bands(labels, n)
        return cls(labels, stats[1:], upper, lower, _clear(piece, upper, lower))

    @property
    def printed(self) -> np.ndarray:
        """Which could be printed lines: thin, straight, clear."""
        return _printed(self.stats, THIN) & self.clear

    def mask(self, keep: np.ndarray) -> np.ndarray:
        """The pixels of the lines `keep` says (one bool per line)."""
        return np.concatenate(([False], keep))[self.labels]


def framed(across: Lines, down: Lines) -> tuple[np.ndarray, np.ndarray]:
    """Of the lines across one piece and down it (found on its transpose), those that make a
    frame: sides and the lines they join, teeth and their base (the latter as the transpose's)."""
    st_a, upper, lower = across.stats, across.upper, across.lower
    st_d = down.stats[:, [1, 0, 3, 2, 4]]  # the lines down in the piece's own x, y, w, h
    ax0, ax1 = st_a[:, 0], st_a[:, 0] + st_a[:, 2] - 1
    dx = st_d[:, 0] + st_d[:, 2] // 2  # each line down's middle column, its ends and length
    top, bottom, length = st_d[:, 1], st_d[:, 1] + st_d[:, 3] - 1, st_d[:, 3]
    # Where each line down stands on each line across: its column, or the line's end column nearest it.
    col = np.clip(dx[:, None], ax0[None] + 1, ax1[None] - 1)  # (a line's end columns may be thinned by the fit)
    rows = np.arange(len(st_a))[None]
    up, low = upper[rows, col] - MEET, lower[rows, col] + MEET  # [down, across]
    beside = (dx[:, None] >= ax0[None] - 2 * MEET) & (dx[:, None] <= ax1[None] + 2 * MEET)
    at_top = (top[:, None] >= up) & (top[:, None] <= low) & beside
    at_bottom = (bottom[:, None] >= up) & (bottom[:, None] <= low) & beside
    printed_a, printed_d = across.printed, down.printed
    frame_a, frame_d = np.zeros(len(st_a), bool), np.zeros(len(st_d), bool)
    for a, b in zip(*np.nonzero(at_top.T.astype(np.uint8) @ at_bottom.astype(np.uint8))):  # lines joined by a line down
        if a != b and printed_a[a] and printed_a[b]:
            sides = _sides(np.flatnonzero(at_top[:, a] & at_bottom[:, b] & printed_d), dx, length, max(ax0[a], ax0[b]), min(ax1[a], ax1[b]))
            if sides.size:
                frame_a[[a, b]] = True
                frame_d[sides] = True
    tooth = _printed(down.stats, TOOTH_THIN) & down.clear & ~frame_d
    for a in np.flatnonzero(~frame_a & printed_a):  # a base whose teeth close the field
        for meets in (at_bottom[:, a] & tooth, at_top[:, a] & tooth):  # teeth standing on it, or hanging from it
            ends = meets & ((np.abs(dx - ax0[a]) <= 2 * MEET) | (np.abs(dx - ax1[a]) <= 2 * MEET))
            # Both ends; or one (a digit written over the other spoils it) and three teeth or more at even steps.
            closed = np.count_nonzero(ends) >= 2 or ends.any() and _even(dx[meets])
            if closed:
                frame_a[a] = True
                frame_d |= meets & (length <= TOOTH_SLACK * max(length[ends].max(), float(np.median(length[meets]))))
    return across.mask(frame_a), down.mask(frame_d)


def _closed(piece: np.ndarray) -> bool:
    """Whether ink stands TOOTH_FROM pixels tall in a column at an end of the piece, as a box's
    sides or a comb's end teeth do (a ruled line with a digit on it ends in the line alone; a
    digit written over a field's end may hide one end)."""
    k = PRINTED + 2 * MEET
    return bool(piece[:, :k].sum(0).max() >= TOOTH_FROM or piece[:, -k:].sum(0).max() >= TOOTH_FROM)


def _edged(piece: np.ndarray) -> bool:
    """Whether the piece's top or bottom edge could be a printed line (a frame's top, bottom or
    base is its outermost ink but where a digit pokes past it): in CLEAR of FRAME_SPAN of the
    columns the edge is within a tilt of SLANT of its median row, and paper shows PRINTED + 1
    pixels inside it, past a printed line's thickness. A cheap look (no search, no fit) that
    refuses most digits before the line search does: their edges are curves, or thick strokes."""
    h, w = piece.shape
    cols = np.arange(w)
    inked = piece.any(0)
    band, need = SLANT * w + 2 + MEET, CLEAR * FRAME_SPAN * w
    for edge, step in ((np.argmax(piece, 0), 1), (h - 1 - np.argmax(piece[::-1], 0), -1)):
        middle = np.partition(edge[inked], np.count_nonzero(inked) // 2)[np.count_nonzero(inked) // 2]
        inside = piece[np.clip(edge + step * (PRINTED + 1), 0, h - 1), cols]
        if np.count_nonzero(inked & (np.abs(edge - middle) <= band) & ~inside) >= need:
            return True
    return False


def _bands(lab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower) [n - 1, width]: the first and last row of each labelled line across, column
    by column (beyond the picture where it has no pixel: h + GAP + 1 and -GAP - 1)."""
    h, w = lab.shape
    ys, xs = pixels(lab > 0)
    which = lab[ys, xs] - 1
    upper, lower = np.full((n - 1, w), h + GAP + 1), np.full((n - 1, w), -GAP - 1)
    np.minimum.at(upper, (which, xs), ys)
    np.maximum.at(lower, (which, xs), ys)
    return upper, lower


def _clear(piece: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Per line across (its band's rows per column), whether the piece's ink keeps clear of it GAP
    pixels past its band on both sides in CLEAR of its columns."""
    h, w = piece.shape
    present = lower >= 0
    cols = np.arange(w)[None]
    above, below = upper - GAP, lower + GAP
    clear_above = (above < 0) | ~piece[np.clip(above, 0, h - 1), cols]
    clear_below = (below >= h) | ~piece[np.clip(below, 0, h - 1), cols]
    return (present & clear_above & clear_below).sum(1) >= CLEAR * present.sum(1)


def _printed(stats: np.ndarray, thin: float) -> np.ndarray:
    """Which lines (stats rows of x, y, w, h, area, lying across) could be printed: `thin` times
    as long as they are thick, and straight (no taller than their thickness and a tilt of SLANT
    allow: a stroke's curve or slant is)."""
    length, extent = stats[:, 2], stats[:, 3]
    thick = stats[:, 4] / np.maximum(length, 1)
    return (length >= thin * thick) & (extent <= thick + SLANT * length + 2)


def _even(xs: np.ndarray) -> bool:
    """Whether three or more columns stand at even steps (one step missed allowed): each gap
    between neighbours within STEP of the common step, or of twice it."""
    if xs.size < 3:
        return False
    gaps = np.diff(np.sort(xs)).astype(np.float64)
    step = float(np.min(gaps))
    k = np.round(gaps / max(step, 1.0))
    return bool(step > 0 and (k <= 2).all() and (k == 1).sum() >= 2 and (np.abs(gaps - k * step) <= STEP * step + MEET).all())


def _sides(joining: np.ndarray, dx: np.ndarray, length: np.ndarray, x0: int, x1: int) -> np.ndarray:
    """Of the lines down joining two lines across (those spanning x0..x1), the sides of a box or a
    row of boxes: one at each end of the lines, and those between at even steps, each cell CELL
    of their height wide or wider (a printed row's cells are alike; a "1" written in one is off
    the step). The most cells that fit, one inner side missing allowed from three cells on (a
    digit written over it). None when either end has no side."""
    joining = joining[np.argsort(dx[joining])]
    reach = 2 * MEET
    if joining.size < 2 or dx[joining[0]] - x0 > reach or x1 - dx[joining[-1]] > reach:
        return joining[:0]
    first, span = dx[joining[0]], dx[joining[-1]] - dx[joining[0]]
    for cells in range(int(span // (CELL * float(np.median(length[joining])))), 0, -1):
        step = span / cells
        expected = first + step * np.arange(1, cells)
        off = np.abs(dx[joining][None, :] - expected[:, None])  # [inner side, candidate]
        near = off.min(1) <= max(reach, STEP * step) if cells > 1 else np.zeros(0, bool)
        if (~near).sum() <= (1 if cells >= 3 else 0):
            inner = joining[off.argmin(1)[near]]
            return np.concatenate(([joining[0]], inner, [joining[-1]]))
    return joining[:0]
