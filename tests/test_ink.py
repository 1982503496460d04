"""serve/ink.py step by step: paper level, threshold, paper lines found and removed, strokes mended."""
import numpy as np
import pytest

from serve.errors import NoDigit
from serve.ink import find_lines, ink_darkness, ink_mask, ink_threshold, remove_lines


def sheet(h=300, w=400, paper=40):
    """A light-ink-on-dark sheet (the polarity serve/ink.py works in)."""
    return np.full((h, w), paper, np.uint8)


def test_darkness_ignores_a_light_fall_off():
    light = sheet()
    light += np.linspace(0, 60, light.shape[1]).astype(np.uint8)[None, :]  # paper darker to one side
    light[100:200, 180:190] += 150  # one stroke
    darkness, _ = ink_darkness(light)
    assert darkness[150, 185] > 120
    assert darkness[:, :150].max() < 20 and darkness[:, 250:].max() < 20


def test_blank_paper_and_faint_texture_are_no_digit():
    rng = np.random.default_rng(0)
    for light in (sheet(), (sheet() + rng.normal(0, 3, (300, 400))).clip(0, 255).astype(np.uint8)):
        with pytest.raises(NoDigit):
            ink_threshold(ink_darkness(light)[0])


def test_tilted_ruled_lines_are_found_and_a_stroke_is_not():
    mask = np.zeros((300, 400), bool)
    xs = np.arange(400)
    for y0 in range(20, 300, 40):  # ruled lines tilted by ~2 degrees, 2 px thick
        ys = (y0 + 0.035 * xs).astype(int)
        for t in range(2):
            ok = ys + t < 300
            mask[ys[ok] + t, xs[ok]] = True
    mask[60:160, 200:206] = True  # an upright stroke crossing two lines
    mask[200:206, 100:220] = True  # a horizontal stroke: long, but nowhere near the picture's width
    horizontal, vertical = find_lines(mask)
    assert not vertical.any()
    assert horizontal[ (20 + 0.035 * 50).__int__(), 50]
    assert not horizontal[203, 110:210].any(), "the horizontal stroke is ink, not a line"
    assert horizontal.sum() > 0.8 * 7 * 2 * 400 * 0.9


def test_removing_lines_mends_the_strokes_that_cross_them():
    mask = np.zeros((200, 300), bool)
    mask[98:102, :] = True  # a line across the sheet
    mask[50:150, 140:146] = True  # a stroke crossing it
    darkness = (mask * 100).astype(np.uint8)
    horizontal, vertical = find_lines(mask)
    out = remove_lines(mask, darkness, horizontal, vertical)
    assert not out[98:102, :100].any() and not out[98:102, 200:].any(), "the line is gone"
    assert out[50:150, 140:146].all(), "the stroke is whole again"


def test_ink_mask_keeps_the_digit_and_drops_the_ruling():
    light = sheet()
    for y in range(15, 300, 30):
        light[y : y + 2] = 110  # ruled lines, fainter than the pen
    light[90:210, 190:198] = 230  # a "1" across four lines
    ink = ink_mask(light)
    rows = np.flatnonzero(ink.mask.any(1))
    cols = np.flatnonzero(ink.mask.any(0))
    assert rows[0] >= 88 and rows[-1] <= 211 and cols[0] >= 188 and cols[-1] <= 199
    assert ink.mask[90:210, 191:197].all()
    assert ink.lines.any()


def test_texture_all_over_is_no_digit():
    rng = np.random.default_rng(1)
    light = (np.kron(rng.random((40, 40)) < 0.7, np.ones((8, 8))) * 200 + 20).astype(np.uint8)
    with pytest.raises(NoDigit):
        ink_mask(light)
