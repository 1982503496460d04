"""serve/ink.py and serve/lines.py step by step: paper level, threshold, paper lines found and removed, strokes mended."""
import numpy as np
import pytest

from serve.errors import NoDigit
from serve.ink import drop_lone_pixels, ink_darkness, ink_mask, ink_threshold, noise_floor
from serve.lines import find_lines, remove_lines


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


@pytest.mark.parametrize("shade", ["corner", "sliver"])
def test_a_shadow_reaching_the_edge_narrowly_is_paper_not_ink(shade):
    # A shadow's wedge in a corner, or a sliver along a side, is narrower than the paper-level
    # window: the paper is taken to go on past the frame as at its edge, so the shade stays paper.
    yy, xx = np.mgrid[0:300, 0:400]
    edge = (90 - (xx + yy)) / np.sqrt(2) if shade == "corner" else (yy - 280.0)  # pixels into the shade
    shaded = 1 / (1 + np.exp(-edge / 3))  # a penumbra a few pixels wide, as a real shadow's
    light = sheet() + 90 * shaded  # (light-ink polarity: a shadow makes the paper lighter here)
    light[100:200, 180:190] += 150  # one stroke
    ink = ink_mask(light.astype(np.uint8))
    assert not ink.mask[shaded > 0.05].any()
    assert ink.mask[100:200, 181:189].all()


def test_a_stroke_crossing_the_edge_stays_ink():
    light = sheet()
    light[0:150, 200:210] += 150  # a stroke that enters from the top, cut by the frame
    light[40:48, 0:120] += 150  # and one from the left
    ink = ink_mask(light)
    assert ink.mask[0:149, 201:209].all() and ink.mask[41:47, 0:119].all()


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


def test_tilted_lines_all_joined_by_one_stroke_are_told_apart():
    """Every line touches the same tall stroke, so none is found alone to give the sheet's slope:
    the slope at which their pixels line up best is searched for instead."""
    mask = np.zeros((200, 360), bool)
    xs = np.arange(360)
    for y0 in (30, 80, 130):  # lines tilted by ~3 degrees, 2 px thick
        ys = (y0 + 0.05 * xs).astype(int)
        for t in range(2):
            mask[ys + t, xs] = True
    mask[20:160, 290:330] = True  # a bold digit down across all three (wide enough to survive the squeeze)
    horizontal, _ = find_lines(mask)
    for y0 in (30, 80, 130):
        assert horizontal[int(y0 + 0.05 * 100), 100], f"the line from y={y0} is found"
    assert not horizontal[60:70, 295:325].any(), "the digit between the lines is ink"


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


def test_noise_floor_is_four_spreads_of_the_paper_whatever_faint_lines_it_holds():
    rng = np.random.default_rng(2)
    grain = rng.normal(0, 3, (200, 200))  # darkness over the local paper level: grain either side of it
    darkness = grain.clip(0, 255).round().astype(np.uint8)  # ... below it, the darkness is 0
    darkness[50:150, 90:100] = 200  # a stroke: not paper
    paper = darkness[darkness < 200 * 0.25]
    clean = noise_floor(darkness, 200)
    assert clean == pytest.approx(4 * paper.std(), rel=0.1)
    darkness[::8] = 35  # faint squared paper: 1 row in 8 and 1 column in 8, far above the grain
    darkness[:, ::8] = 35
    assert 4 * darkness[darkness < 50].std() > 3 * clean, "the lines would dominate a plain spread"
    assert noise_floor(darkness, 200) == pytest.approx(clean, rel=0.1), "the lines are not grain"


def test_a_faint_squared_grid_goes_and_the_digit_stays():
    """Grey squared paper, fainter than the pen but far above the grain: the lines are found
    whole (the noise floor does not take them for grain and break them into dashes)."""
    rng = np.random.default_rng(3)
    light = (sheet() + rng.normal(0, 3, (300, 400))).clip(0, 255).astype(np.uint8)
    light[5::20] += 40
    light[:, 7::20] += 40
    light[100:200, 200:207] = 230  # a "1"
    ink = ink_mask(light)
    assert ink.mask[100:200, 201:206].mean() > 0.95
    assert ink.mask[:, :180].sum() == 0 and ink.mask[:, 230:].sum() == 0, "no grid left beside it"


def test_lone_pixels_go_and_strokes_stay():
    mask = np.zeros((40, 40), bool)
    mask[5, 5] = True  # a speck
    mask[20:22, 10:30] = True  # a thin stroke
    out = drop_lone_pixels(mask)
    assert not out[5, 5] and (out[20:22, 10:30]).all()


def test_a_dark_margin_line_goes_with_the_faint_ruling():
    """The pen-darker-than-the-line rule takes each direction's own level: a red margin line,
    far darker than the blue ruling, is still a line."""
    light = sheet()
    for y in range(15, 300, 30):
        light[y : y + 2] = 90  # faint ruling
    light[:, 40:43] = 200  # a dark margin line
    light[100:200, 200:207] = 230  # a "1"
    ink = ink_mask(light)
    assert not ink.mask[:, 35:48].any(), "the margin line is gone"
    assert ink.mask[100:200, 201:206].mean() > 0.95


def test_squeeze_sets_a_pixel_where_two_of_its_four_columns_are_set():
    from serve.lines import squeeze

    rng = np.random.default_rng(3)
    for w in (4, 7, 125, 126):  # a whole number of groups, and a last group padded with unset columns
        mask = rng.random((9, w)) > 0.6
        padded = np.zeros((9, -(-w // 4) * 4), bool)
        padded[:, :w] = mask
        expected = padded.reshape(9, -1, 4).sum(2) >= 2
        assert squeeze(mask).shape == expected.shape and (squeeze(mask) == expected).all(), w
        # The transposed view vertical lines are searched on: squeezed from the picture's rows, the same values.
        picture = np.ascontiguousarray(mask.T)
        assert not picture.T.flags.c_contiguous
        got = squeeze(picture.T)
        assert got.shape == expected.shape and (got == expected).all() and got.flags.c_contiguous, w


def test_pixels_are_those_np_nonzero_finds_in_the_same_order():
    from serve.lines import pixels

    rng = np.random.default_rng(4)
    for mask in (rng.random((40, 33)) > 0.8, (rng.random((5, 6)) > 0.5).astype(np.uint8) * 255,
                 (rng.random((30, 20)) > 0.7).T, np.zeros((3, 4), bool)):
        got, want = pixels(mask), np.nonzero(mask)
        assert all(np.array_equal(g, x) for g, x in zip(got, want))
