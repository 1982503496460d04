"""A sheet of paper photographed on a desk (serve/page.py): found, turned upright, read, and
its boxes mapped back to the photo; light strokes on a dark canvas are never taken for a sheet.
Ruling photographed crooked is levelled before the line search. A shadow across the sheet is
paper in shade: neither a dark canvas nor a desk."""
import cv2
import numpy as np
import pytest

from serve.page import (box_on_picture, find_page, on_page, ruling_tilt, upright_corners, with_margin, within,
                        writing_on)
from serve.preprocess import Spec, border_paper, read_gray, shaded_paper
from serve.segment import favoured
from train.mnist import MEAN, STD
from train.negatives import digit_ink

SPEC = Spec(mean=MEAN, std=STD)


def desk_photo(digits, angle: float, size=(900, 640), sheet=(520, 360), desk=60, paper=225):
    """(gray picture, sheet corners, digit centres): a sheet turned by `angle` degrees lying on a
    desk, with the digits written along its middle, upright on the sheet."""
    w, h = sheet
    page = np.full((h, w), paper, np.float32)
    centres, x = [], 80
    for d in digits:
        ink = digit_ink(d, 110)
        y = (h - ink.shape[0]) // 2
        region = page[y : y + ink.shape[0], x : x + ink.shape[1]]
        region[:] = region * (1 - ink) + 30 * ink
        centres.append((x + ink.shape[1] / 2, y + ink.shape[0] / 2))
        x += ink.shape[1] + 40
    W, H = size
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)  # about the sheet's centre ...
    turn[:, 2] += (W / 2 - w / 2, H / 2 - h / 2)  # ... put in the middle of the photo
    photo = cv2.warpAffine(page, turn, (W, H), flags=cv2.INTER_LINEAR, borderValue=-1)
    photo = np.where(photo < 0, desk, photo)
    rng = np.random.default_rng(0)
    photo = np.clip(photo + rng.normal(0, 3, photo.shape), 0, 255).astype(np.uint8)
    move = lambda pts: np.hstack([np.asarray(pts, float).reshape(-1, 2), np.ones((len(pts), 1))]) @ turn.T  # noqa: E731
    return photo, move([(0, 0), (w, 0), (w, h), (0, h)]), move(centres)


def assert_boxes_hold(boxes, centres):
    """Each box (x, y, w, h) holds its digit's centre, in order."""
    assert len(boxes) == len(centres)
    for (x, y, w, h), (cx, cy) in zip(boxes, centres):
        assert x <= cx <= x + w and y <= cy <= y + h, ((x, y, w, h), (cx, cy))


@pytest.fixture(scope="module")
def digits(mnist_dir):
    from train.mnist import load_split

    test = load_split(mnist_dir, "test")
    return test.images, test.labels


@pytest.mark.parametrize("angle", [-10.0, 0.0, 7.0])
def test_the_sheet_is_found_where_it_lies(digits, angle):
    photo, corners, _ = desk_photo(digits[0][:3], angle)
    page = find_page(photo)
    assert page is not None
    assert np.abs(page.corners - corners).max() < 8, (page.corners, corners)  # a few pixels: the search copy is 200 px
    assert abs(page.paper - 225) <= 6


def test_the_sheet_is_read_upright_and_boxes_land_on_the_photo(digits):
    images, labels = digits
    photo, _, centres = desk_photo(images[:3], 9.0)
    page = find_page(photo)
    sheet, to_picture = on_page(photo, page)
    # Upright: the sheet's writing runs level, its paper reaches every edge (no desk left).
    assert sheet.shape[1] > sheet.shape[0] and min(sheet[0].min(), sheet[-1].min(), sheet[:, 0].min(), sheet[:, -1].min()) > 150
    found = favoured(read_gray(photo, SPEC))  # (a wide "2" is also offered cut in two: the model would choose)
    assert len(found) == 3
    assert_boxes_hold([d.box for d in found], centres)
    # The map back is the inverse of the cut: the cut sheet's middle is the found sheet's middle.
    bx, by, bw, bh = box_on_picture((sheet.shape[1] / 2, sheet.shape[0] / 2, 0, 0), to_picture)
    assert np.hypot(bx - page.corners[:, 0].mean(), by - page.corners[:, 1].mean()) < 1 and bw == bh == 0


def test_boxes_are_given_in_the_uploaded_pictures_pixels(digits):
    photo, _, centres = desk_photo(digits[0][:2], -6.0)
    found = favoured(read_gray(cv2.resize(photo, (450, 320), interpolation=cv2.INTER_AREA), SPEC, size=(900, 640)))
    assert len(found) == 2
    assert_boxes_hold([d.box for d in found], centres)


def test_light_strokes_on_a_dark_canvas_are_not_a_sheet(digits):
    images, labels = digits
    for img in images[:300]:  # MNIST itself: light ink on black
        assert find_page(img) is None
        big = cv2.resize(img, (280, 280), interpolation=cv2.INTER_LINEAR)
        assert find_page(big) is None
    ones = images[labels == 1][:50]  # a bold "1" is a bright bar: no sheet (too narrow, nothing written on it)
    assert all(find_page(cv2.dilate(cv2.resize(one, (280, 280)), np.ones((15, 15), np.uint8))) is None for one in ones)


def test_no_sheet_without_a_desk_or_without_writing(digits):
    photo, _, _ = desk_photo(digits[0][:1], 0.0, size=(540, 380), sheet=(540, 380))  # the sheet fills the photo
    assert find_page(photo) is None
    blank, _, _ = desk_photo([], 5.0)
    assert find_page(blank) is None


def test_corners_come_in_reading_order_for_any_turn_under_45_degrees():
    for angle in (-44, -20, -3, 0, 3, 20, 44):
        for w, h in ((400, 100), (100, 400), (200, 200)):
            tl, tr, br, bl = upright_corners(cv2.boxPoints(((300, 300), (w, h), angle)))
            assert tl[0] < tr[0] and bl[0] < br[0] and tl[1] < bl[1] and tr[1] < br[1], (angle, w, h)


def ruled_photo(digit, angle: float, size=(420, 300), unit=60):
    """(gray picture, digit centre): one digit on ruled paper that fills the frame, photographed
    `angle` degrees off level (the sheet turned about the frame's centre)."""
    w, h = size
    sheet = np.full((2 * h, 2 * w), 235, np.float32)
    for y in range(7, 2 * h, unit):
        sheet[y : y + 2] = 150
    ink = digit_ink(digit, 100)
    x0, y0 = w - ink.shape[1] // 2 + 40, h - ink.shape[0] // 2
    region = sheet[y0 : y0 + ink.shape[0], x0 : x0 + ink.shape[1]]
    region[:] = region * (1 - ink) + 30 * ink
    turn = cv2.getRotationMatrix2D((w, h), angle, 1.0)
    turn[:, 2] -= (w / 2, h / 2)  # the frame is the middle of the turned sheet
    photo = cv2.warpAffine(sheet, turn, (w, h), flags=cv2.INTER_LINEAR)
    centre = turn @ np.array([x0 + ink.shape[1] / 2, y0 + ink.shape[0] / 2, 1.0])
    return np.clip(photo, 0, 255).astype(np.uint8), centre


@pytest.mark.parametrize("angle", [-12.0, -6.0, 9.0])
def test_crooked_ruling_is_found_and_levelled(digits, angle):
    images, labels = digits
    photo, (cx, cy) = ruled_photo(images[0], angle)
    mask = (255 - photo) > 60  # the ink and the ruling, as the ink search would first see them
    tilt = ruling_tilt(mask)
    assert abs(tilt + angle) <= 1.0, tilt  # cv2 turns counter-clockwise: the lines run down by -angle
    (found,) = favoured(read_gray(photo, SPEC))  # one digit: the ruling is taken out once level
    assert_boxes_hold([found.box], [(cx, cy)])
    assert found.box[3] < 130, found.box  # on the photo, the digit's own size


def test_level_or_lone_ink_has_no_tilt(digits):
    images, _ = digits
    level, _ = ruled_photo(images[0], 1.0)  # the line search follows this itself
    assert ruling_tilt((255 - level) > 60) == 0.0
    lone = np.zeros((300, 420), bool)
    lone[100:200, 150:230] = cv2.resize(images[1], (80, 100)) > 100
    assert ruling_tilt(lone) == 0.0


def shaded_photo(digit, shade: str, size=(420, 300), paper=225.0, dim=0.5):
    """(gray picture, the same unshaded, digit centre): one digit on a sheet that fills the frame,
    in a shadow (`dim` of the light, its penumbra ~30 pixels wide) over the lower two thirds ("most",
    the digit in the middle) or over the bottom right corner ("corner", the digit near it)."""
    w, h = size
    page = np.full((h, w), paper, np.float32)
    ink = digit_ink(digit, 100)
    cx, cy = (w / 2, h / 2 + 20) if shade == "most" else (0.72 * w, 0.68 * h)
    x0, y0 = int(cx - ink.shape[1] / 2), int(cy - ink.shape[0] / 2)
    region = page[y0 : y0 + ink.shape[0], x0 : x0 + ink.shape[1]]
    region[:] = region * (1 - ink) + 30 * ink
    yy, xx = np.mgrid[0:h, 0:w]
    into = (yy - h / 3.0) if shade == "most" else (xx + yy - (cx + cy - 70)) / np.sqrt(2)  # pixels into the shade
    shadow = 1 - (1 - dim) / (1 + np.exp(-into / 8))
    as_u8 = lambda a: np.clip(a, 0, 255).astype(np.uint8)  # noqa: E731
    return as_u8(page * shadow), as_u8(page), (x0 + ink.shape[1] / 2, y0 + ink.shape[0] / 2)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_a_shadow_over_most_of_the_border_is_paper_in_shade(digits):
    images, _ = digits
    photo, plain, centre = shaded_photo(images[0], "most")
    assert not border_paper(photo)[0]  # the border alone says: a dark canvas
    assert shaded_paper(photo)  # ... but the pen is darker still
    (found,) = favoured(read_gray(photo, SPEC))
    assert_boxes_hold([found.box], [centre])
    (unshaded,) = favoured(read_gray(plain, SPEC))
    assert correlation(found.image, unshaded.image) > 0.9


def test_light_strokes_on_a_dark_canvas_are_not_paper_in_shade(digits):
    images, _ = digits
    for img in images[:300]:  # MNIST itself, and upscaled with a little noise: nothing is darker than its canvas
        assert not shaded_paper(img)
        big = cv2.resize(img, (280, 280), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        noisy = np.clip(big + np.random.default_rng(0).normal(0, 3, big.shape), 0, 255).astype(np.uint8)
        assert not shaded_paper(noisy)
    board = np.where(cv2.resize(images[1], (280, 280)) > 100, 230, 80).astype(np.uint8)  # chalk on a grey board
    assert not shaded_paper(board)


def test_a_shadow_over_a_corner_is_not_a_desk(digits):
    images, _ = digits
    photo, plain, centre = shaded_photo(images[2], "corner")
    assert border_paper(photo) == (True, True)  # light paper, a stretch of it much darker: searched for a sheet
    assert find_page(photo) is None  # the "desk" has writing on it: paper in shade
    (found,) = favoured(read_gray(photo, SPEC))
    assert_boxes_hold([found.box], [centre])
    (unshaded,) = favoured(read_gray(plain, SPEC))
    assert correlation(found.image, unshaded.image) > 0.9


@pytest.mark.parametrize("seed", [24, 38, 109])
def test_the_lit_part_of_a_shaded_sheet_is_not_a_sheet_on_a_desk(digits, seed):
    # tests/pages.py's shadowed pictures where the lit part, its edge straight, was once cut out as a
    # sheet whose lie was unknown and the shade painted over as desk, with the digit in it.
    from serve.preprocess import Limits, decode, to_gray
    from tests.pages import picture

    gray = to_gray(decode(picture("single_shadowed", seed, *digits).data, Limits()))
    assert find_page(gray) is None
    assert len(favoured(read_gray(gray, SPEC))) == 1


def test_a_desk_along_one_side_of_a_sheet_larger_than_the_frame_is_painted_over(digits):
    images, _ = digits
    _, plain, centre = shaded_photo(images[2], "most")
    # The sheet turned 8 degrees, larger than the frame: only its right edge shows, the desk beyond.
    yy, xx = np.mgrid[0 : plain.shape[0], 0 : plain.shape[1]]
    a = np.radians(8)
    photo = np.where((xx - 340) * np.cos(a) + (yy - 150) * np.sin(a) > 0, np.uint8(60), plain)
    page = find_page(photo)
    assert page is not None and page.desk is not None  # one edge: its lie unknown, cut out as it stands
    (found,) = favoured(read_gray(photo, SPEC))
    assert_boxes_hold([found.box], [centre])


def test_writing_is_ink_much_darker_than_its_paper():
    rng = np.random.default_rng(0)
    desk = np.clip(70 + 12 * np.sin(np.arange(4000) / 7.0) + rng.normal(0, 4, 4000), 0, 255)  # grain and noise
    assert not writing_on(desk, float(np.median(desk)))
    shade = desk.copy()
    shade[:40] = 20  # 1% of it written on, at under half its level
    assert writing_on(shade, float(np.median(shade)))
    assert not writing_on(np.full(4000, 30.0), 30.0)  # too dark to write on: nothing is 40 levels below it


def test_a_margin_is_paper_round_the_picture_and_maps_back():
    picture = np.arange(200, dtype=np.uint8).reshape(10, 20)
    framed, back = with_margin(picture, 3.4, 250)
    assert framed.shape == (16, 26) and (framed[3:13, 3:23] == picture).all()
    assert (framed[:3] == 250).all() and (framed[:, -3:] == 250).all()
    assert np.allclose(box_on_picture((3, 3, 20, 10), back), (0, 0, 20, 10))


def test_boxes_are_cut_to_the_picture():
    assert within((-12, 5, 40, 10), (30, 20)) == (0, 5, 28, 10)
    assert within((25, 15, 10, 10), (30, 20)) == (25, 15, 5, 5)
    assert within((40, 30, 5, 5), (30, 20)) == (29, 19, 1, 1)  # wholly off: a pixel at the corner
