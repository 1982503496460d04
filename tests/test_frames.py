"""serve/frames.py: a form's printed boxes and comb teeth are found in the ink and taken out; the
digits written in them, and digits alone, never are."""
import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from serve.frames import find_frames, may_hold_frames
from serve.ink import ink_mask
from train.negatives import digit_ink

CELL_W, CELL_H, DIGIT = 64, 70, 50


@pytest.fixture(scope="module")
def digits(mnist_dir):
    from train.mnist import load_split

    return load_split(mnist_dir, "test").images


def form(style: str, n: int, width: int = 2, tilt: float = 0.0, inks=(), drop=0) -> tuple[np.ndarray, np.ndarray]:
    """(frame, ink): bool masks of a printed field of n cells (`style` as tests/pages.py's forms)
    and of the strokes written in its cells (`inks`: (float ink, x offset, y offset) per cell, the
    offsets from the cell's middle; `drop` moves a digit down onto the bottom line), turned by `tilt`
    degrees."""
    gap = 20 if style == "boxes" else 0
    w, h = 40 + n * CELL_W + (n - 1) * gap, 40 + CELL_H
    frame, ink = Image.new("L", (w, h)), Image.new("L", (w, h))
    d = ImageDraw.Draw(frame)
    cells = [(20 + i * (CELL_W + gap), 20) for i in range(n)]
    if style == "comb":
        d.line((20, 20 + CELL_H, 20 + n * CELL_W, 20 + CELL_H), fill=255, width=width)
        for i in range(n + 1):
            d.line((20 + i * CELL_W, 20 + CELL_H - 22, 20 + i * CELL_W, 20 + CELL_H), fill=255, width=width)
    else:
        for x, y in cells:
            d.rectangle((x, y, x + CELL_W, y + CELL_H), outline=255, width=width)
    for (x, y), (a, dx, dy) in zip(cells, inks):
        stroke = Image.fromarray(((a > 0.5) * 255).astype(np.uint8))
        ink.paste(stroke, (x + (CELL_W - a.shape[1]) // 2 + dx, y + (CELL_H - a.shape[0]) // 2 + dy), stroke)
    turned = [np.asarray(im.rotate(tilt, resample=Image.Resampling.NEAREST)) > 0 for im in (frame, ink)]
    return turned[0], turned[1]


def lit(frame: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """The light-ink picture (serve/ink.py's polarity) of a printed frame and the pen's strokes."""
    light = np.full(frame.shape, 30, np.uint8)
    light[frame] = 200
    light[ink] = 220
    return light


def found(frame: np.ndarray, ink: np.ndarray) -> tuple[float, float]:
    """(share of the frame found, share of the ink more than 3 pixels from the frame taken for
    frame: where a stroke crosses or touches a line, the line's band takes its edge)."""
    horizontal, vertical = find_frames(frame | ink, np.zeros_like(frame))
    lines = horizontal | vertical
    near = cv2.dilate(frame.view(np.uint8), np.ones((7, 7), np.uint8)) > 0
    return lines[frame].mean(), lines[ink & ~near].mean()


@pytest.mark.parametrize("style", ["boxes", "row", "comb"])
@pytest.mark.parametrize("tilt", [0.0, 2.5])
def test_a_forms_field_is_found_and_the_digits_in_it_are_not(digits, style, tilt):
    inks = [(digit_ink(digits[i], DIGIT), 0, 0) for i in range(5)]
    inks[1] = (inks[1][0], 0, (CELL_H - DIGIT) // 2 + 2)  # one sits on (and crosses) the bottom line
    frame, ink = form(style, 5, tilt=tilt, inks=inks)
    frame_found, ink_taken = found(frame, ink)
    assert frame_found > 0.9 and ink_taken < 0.005, (frame_found, ink_taken)


@pytest.mark.parametrize("style", ["boxes", "row"])
def test_a_one_in_its_box_is_not_a_side(style):
    one = np.ones((CELL_H, 5), np.float32)  # a straight "1" from line to line, as straight as a side
    frame, ink = form(style, 3, inks=[(one, 0, 0), (one, 12, 0), (one, -12, 0)])
    frame_found, ink_taken = found(frame, ink)
    assert frame_found > 0.9 and ink_taken == 0.0


def test_a_one_standing_on_a_combs_base_is_not_a_tooth():
    one = np.ones((DIGIT, 5), np.float32)
    frame, ink = form("comb", 3, inks=[(one, 0, (CELL_H - DIGIT) // 2 + 1)] * 3)
    frame_found, ink_taken = found(frame, ink)
    assert frame_found > 0.9 and ink_taken == 0.0


def test_a_comb_with_a_digit_over_one_end_is_still_found(digits):
    # The end tooth joined by a digit's stroke is no printed line; the other end and the teeth at
    # even steps still make the comb.
    inks = [(digit_ink(digits[i], DIGIT), 0, 0) for i in range(4)]
    inks[0] = (inks[0][0], -CELL_W // 2 + 4, (CELL_H - DIGIT) // 2)  # over the first tooth, on the base
    frame, ink = form("comb", 4, inks=inks)
    frame_found, ink_taken = found(frame, ink)
    assert frame_found > 0.8 and ink_taken < 0.005, (frame_found, ink_taken)


@pytest.mark.parametrize("height", [40, 90, 200])
def test_digits_alone_are_never_a_frame(digits, height):
    # Loops, bars and uprights are lines that meet, but not at a printed line's length and thinness.
    for image in digits[:300]:
        mask = np.zeros((height + 40, 2 * height + 40), bool)
        a = digit_ink(image, height) > 0.5
        mask[20 : 20 + a.shape[0], 20 : 20 + a.shape[1]] = a
        horizontal, vertical = find_frames(mask, np.zeros_like(mask))
        assert not (horizontal.any() or vertical.any())


def test_ink_mask_takes_the_frame_out_and_keeps_the_digits(digits):
    inks = [(digit_ink(digits[i], DIGIT), 0, 0) for i in range(4)]
    frame, ink = form("row", 4, width=3, tilt=1.5, inks=inks)
    taken = ink_mask(lit(frame, ink))
    assert taken.mask[ink & ~frame].mean() > 0.95
    assert taken.mask[frame & ~ink].mean() < 0.02 and taken.lines[frame].mean() > 0.9


def test_a_row_of_boxes_as_wide_as_the_picture_loses_its_sides_too(digits):
    # Its top and bottom cross the picture and are taken out as paper lines; its sides, standing
    # between them, are still found as the frame's.
    inks = [(digit_ink(digits[i], DIGIT), 0, 0) for i in range(5)]
    frame, ink = form("row", 5, inks=inks)
    frame, ink = frame[:, 15:-15], ink[:, 15:-15]  # the row spans all but 5 pixels each side
    taken = ink_mask(lit(frame, ink))
    assert taken.mask[ink & ~frame].mean() > 0.95
    assert taken.mask[frame & ~ink].mean() < 0.02


def test_only_pictures_with_thin_lines_both_ways_are_searched(digits):
    # The whole-picture look that spares most uploads the search (a speed filter: a digit it lets
    # through is refused by the search itself, as test_digits_alone_are_never_a_frame shows).
    for style in ("boxes", "row", "comb"):
        assert may_hold_frames(form(style, 3, inks=[(digit_ink(digits[i], DIGIT), 0, 0) for i in range(3)])[0])
    searched = [may_hold_frames(np.pad(digit_ink(image, 90) > 0.5, 20)) for image in digits[:300]]
    assert np.mean(searched) < 0.1
