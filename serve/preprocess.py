"""Uploaded image bytes -> the normalized 28x28 array the model was trained on.

Real uploads are photos, scans and canvas drawings: dark ink on light paper, any size, the digit
anywhere, often on ruled or squared paper, sometimes a whole number. MNIST is light ink on black,
size-normalized into a 20x20 box and centred by centre of mass in 28x28. Each step is a pure
function: decode -> to_gray -> (a sheet lying on a desk cut out upright: serve/page.py) ->
ink_mask (serve/ink.py) -> segment (serve/segment.py) -> one
model input per digit; `read` returns them all (POST /read), `prepare` the one digit /predict
and the KServe image_bytes input classify.
"""
from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, ImageStat

from serve.errors import BadImage, NoDigit, SeveralDigits, TooLarge, TooManyDigits, UnsupportedType
from serve.ink import Ink, ink_mask, plain_opencv
from serve.page import (PAGE_BORDER, PAGE_CONTRAST, box_on_picture, chain, find_page, levelled, on_page, ruling_tilt,
                        with_margin, within, writing_on)
from serve.segment import Segment, favoured, merge, segment

# Allowed formats, recognised by their magic bytes before any decoder runs. PNG covers canvas
# exports and scans, JPEG covers phone photos; everything else is refused unparsed.
MAGIC = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}

_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")

WORK_SIZE = 256  # longest side a digit crop is scaled to before fitting: ample for a 20x20 result
READ_SIZE = 480  # longest side the page is searched at: an 8-digit number keeps ~50 px per digit
READ_SLACK = 1.3  # a picture up to this much longer is searched as it is: a resize costs more than it saves
RECUT_BELOW = 40  # a digit shorter than this on the searched copy is cut again from the full picture
FRAME = 28
MAX_DIGITS = 64  # digits per picture that /read answers
FILL = 0.75  # ink on this fraction of a picture's rows and columns (MNIST's framing: 71%): cropped tight, if it ...
FILL_INK = 0.12  # ... and covers this fraction of its pixels (crooked ruling left as ink covers less)
MARGIN = 0.2  # ... and read with this much paper added on every side (fraction of its longer side)
STROKE_FRACTION = 0.11  # MNIST strokes are ~2.2 px in the 20 px box; thinner pen strokes are thickened


@dataclass(frozen=True)
class Spec:
    """What the model expects, from the manifest: normalization and the digit box."""

    mean: float
    std: float
    scale: float = 1 / 255
    digit_box: int = 20

    @classmethod
    def from_manifest(cls, manifest: dict) -> "Spec":
        pre = manifest["preprocessing"]
        norm = pre["normalization"]
        return cls(mean=norm["mean"], std=norm["std"], scale=norm["scale"], digit_box=pre["digit_box"])


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class Prepared:
    tensor: np.ndarray  # float32 [1, 28, 28], normalized
    image: np.ndarray  # uint8 [28, 28], light ink on black: what the model saw


@dataclass(frozen=True)
class Digit(Prepared):
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x, y, w, h in the uploaded picture's pixels (upright)
    line: int = 0  # line of text, from the top
    choice: int = -1  # the ambiguous group this digit is one reading of (serve/segment.py); -1: none
    option: int = 0  # which reading of it: 0 is the one the shapes favour


def sniff_format(data: bytes) -> str:
    """The allowed format these bytes claim by their signature, or UnsupportedType."""
    if not data:
        raise BadImage("empty image")
    for fmt, magic in MAGIC.items():
        if data.startswith(magic):
            return fmt
    raise UnsupportedType(f"unsupported image type: allowed are {', '.join(MEDIA_TYPES.values())}")


def decode(data: bytes, limits: Limits) -> Image.Image:
    """Decode an allowed image safely: the header is checked for size before any pixel is decoded."""
    return decode_sized(data, limits)[0]


def decode_sized(data: bytes, limits: Limits) -> tuple[Image.Image, tuple[int, int]]:
    """(image, size): the decoded image, upright, and the upright size of the full picture.

    A big JPEG is decoded by libjpeg at 1/2..1/8 scale (never below READ_SIZE on its longest
    side) and grey only when it is to be read grey, so the size the client's boxes refer to is
    returned beside it.
    """
    fmt = sniff_format(data)
    try:
        img = Image.open(io.BytesIO(data), formats=[fmt])
        w, h = img.size
        if w <= 0 or h <= 0:
            raise BadImage("image has no pixels")
        if w * h > limits.max_pixels:
            raise TooLarge(f"image is {w}x{h} = {w * h} pixels; the limit is {limits.max_pixels}")
        if fmt == "JPEG":
            f = READ_SIZE / max(w, h)
            img.draft("L" if img.mode in ("L", "RGB", "YCbCr") else img.mode, (max(1, int(w * f)), max(1, int(h * f))))
        img.load()
        turned = img.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that swap width and height
        ImageOps.exif_transpose(img, in_place=True)  # in place: a returned copy would double the peak memory
        return img, ((h, w) if turned else (w, h))
    except (BadImage, TooLarge):
        raise
    except Image.DecompressionBombError as e:
        raise TooLarge(f"image too large: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, KeyError, IndexError, struct.error) as e:
        # Pillow's messages may name an object by its memory address: never send that to a client.
        raise BadImage(f"cannot decode {fmt} image: {_OBJECT_REPR.sub('the upload', str(e))}") from None


def to_gray(img: Image.Image) -> np.ndarray:
    """Grayscale uint8 array. Transparent areas are paper: composited onto white, or onto black
    when the drawing itself is light (light strokes on a transparent canvas)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # One byte per pixel per step (Pillow, not float arrays): a large canvas stays cheap.
        rgba = img if img.mode in ("RGBA", "LA") else img.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 250:  # really uses transparency
            gray = rgba.convert("L")
            opaque = alpha.point(lambda a: 255 if a > 127 else 0)
            ink_light = opaque.getbbox() is not None and ImageStat.Stat(gray, opaque).mean[0] > 127
            paper = Image.new("L", gray.size, 0 if ink_light else 255)
            return np.asarray(Image.composite(gray, paper, alpha))
    return np.asarray(img.convert("L"))


def shrink(gray: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """Downscale so the longest side is at most `size` (area-averaging keeps thin strokes)."""
    h, w = gray.shape
    if max(h, w) <= size:
        return gray
    f = size / max(h, w)
    return cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def _border(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """(the picture's outermost pixels, their median): what dominates the border is the paper."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return border, percentile(border, 50)


def border_paper(gray: np.ndarray) -> tuple[bool, bool]:
    """(dark on light, darker somewhere): paper is what dominates the image border, so a light
    middle grey there means dark ink, the usual upload; and whether a stretch of the border is much
    darker than that (serve/page.py's sheet on a desk may then show at a side or two)."""
    border, middle = _border(gray)
    return middle > 127, np.count_nonzero(border < middle - PAGE_CONTRAST) >= PAGE_BORDER * border.size


def shaded_paper(gray: np.ndarray) -> bool:
    """Whether a dark border is paper in shade or dim light rather than a dark canvas: there is
    writing much darker than it on the picture (serve/page.py's `writing_on`). A canvas for light
    strokes is the darkest thing on its picture; a shadow across a sheet, or a photo taken in poor
    light, leaves the pen darker still."""
    step = -(-max(gray.shape) // READ_SIZE)  # a strided look is enough to count a share of the pixels
    return writing_on(gray[::step, ::step], _border(gray)[1])


def fills_frame(ink: Ink) -> bool:
    """Whether ink covers FILL of the picture's rows and of its columns and FILL_INK of its pixels,
    with at most two lines found: a picture cropped tight to its digit. Its strokes are then wide
    against the paper-level window (a fraction of the picture's shorter side: a tight "1" is hardly
    wider than its stroke), and the window follows them into the ink, leaving outlines. (The bars
    of a tight "7" or "2" cross the picture as ruled lines do; a ruled page shows more of them.)"""
    return (np.count_nonzero(ink.mask.any(1)) >= FILL * ink.mask.shape[0]
            and np.count_nonzero(ink.mask.any(0)) >= FILL * ink.mask.shape[1]
            and cv2.countNonZero(ink.mask.view(np.uint8)) >= FILL_INK * ink.mask.size
            and cv2.connectedComponents(ink.lines.view(np.uint8))[0] <= 3)  # (its background is one)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing: twice its area over its perimeter."""
    area = np.count_nonzero(mask)  # (a bool array's sum() is ~8x slower)
    edges = np.count_nonzero(np.diff(mask, axis=0)) + np.count_nonzero(np.diff(mask, axis=1))
    edges += sum(np.count_nonzero(side) for side in (mask[0], mask[-1], mask[:, 0], mask[:, -1]))
    return 2.0 * area / max(edges, 1)


def thicken(crop: np.ndarray) -> np.ndarray:
    """Dilate strokes that are much thinner than MNIST's, relative to the digit's size."""
    target = STROKE_FRACTION * max(crop.shape)
    width = stroke_width(crop > 0.35)
    img = (crop * 255).astype(np.uint8)
    grow = int(round((target - width) / 2))
    if grow > 0:  # each 3x3 dilation (a max filter) adds one pixel per side
        img = cv2.dilate(img, np.ones((3, 3), np.uint8), iterations=min(grow, 8))
    out = img.astype(np.float32) / 255.0
    # MNIST strokes have saturated cores; a faint pen or a thin stroke's blur should not look grey.
    strokes = out[out > 0.35]
    core = percentile(strokes, 90) if strokes.size else 1.0
    return np.clip(out / max(core, 1e-3), 0.0, 1.0)


def percentile(values: np.ndarray, q: float) -> float:
    """np.percentile(values, q) of a 1-D array, the same value (linear interpolation, numpy's own
    lerp), by one partial sort: np.percentile's generality costs ~0.15 ms a call, a tenth of a
    small picture's whole preprocessing."""
    pos = q / 100.0 * (values.size - 1)
    lo = int(pos)
    hi, t = min(lo + 1, values.size - 1), pos - lo
    part = np.partition(values, (lo, hi))
    a, b = part[lo], part[hi]  # numpy scalars: the arithmetic stays in the array's precision, as numpy's
    return float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)


def fit_box(crop: np.ndarray, box: int) -> np.ndarray:
    """Resize so the longer side is `box` pixels, keeping the aspect ratio (float [0, 1] in/out)."""
    h, w = crop.shape
    f = box / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    img = Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0


def centre_by_mass(digit: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """Place the digit in a frame x frame canvas with its centre of mass at the centre."""
    h, w = digit.shape
    # From the row and column sums (cv2.moments takes ~0.13 ms on a 20x20 float image, this ~10 us).
    rows, cols = digit.sum(1, dtype=np.float64), digit.sum(0, dtype=np.float64)
    mass = rows.sum()
    cy, cx = (rows @ np.arange(h) / mass, cols @ np.arange(w) / mass) if mass > 0 else (h / 2, w / 2)
    top = int(np.clip(round(frame / 2 - cy - 0.5), 0, frame - h))
    left = int(np.clip(round(frame / 2 - cx - 0.5), 0, frame - w))
    out = np.zeros((frame, frame), np.float32)
    out[top : top + h, left : left + w] = digit
    return out


def normalize(image_u8: np.ndarray, spec: Spec) -> np.ndarray:
    """uint8 [28, 28] -> float32 [1, 28, 28] with the manifest's normalization."""
    return ((image_u8.astype(np.float32) * spec.scale - spec.mean) / spec.std)[None]


def digit_ink(ink: Ink, seg: Segment, light: np.ndarray) -> np.ndarray:
    """Float [0, 1] ink of one digit, cut to its box: only its own strokes (not a neighbour's
    reaching into the box, nor a line), with their anti-aliased edges. A digit small on the
    searched copy is cut again from the full-resolution picture, so it keeps its detail."""
    x, y, w, h = seg.box
    H, W = ink.darkness.shape
    own = np.zeros((h + 2, w + 2), np.uint8)
    own[1:-1, 1:-1] = seg.mask
    own = cv2.dilate(own, np.ones((3, 3), np.uint8))  # the soft edge the threshold cut off
    y0, y1, x0, x1 = y - 1, y + h + 1, x - 1, x + w + 1
    own = own[max(0, -y0) : own.shape[0] - max(0, y1 - H), max(0, -x0) : own.shape[1] - max(0, x1 - W)]
    y0, y1, x0, x1 = max(0, y0), min(H, y1), max(0, x0), min(W, x1)
    fy, fx = light.shape[0] / H, light.shape[1] / W
    if h < RECUT_BELOW and min(fy, fx) > 1.5:
        Y0, Y1, X0, X1 = int(y0 * fy), int(np.ceil(y1 * fy)), int(x0 * fx), int(np.ceil(x1 * fx))
        region = light[Y0:Y1, X0:X1]
        size = (region.shape[1], region.shape[0])
        paper = cv2.resize(ink.paper[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR)
        own = cv2.resize(own, size, interpolation=cv2.INTER_NEAREST)
        darkness = shrink(cv2.subtract(region, paper) * own)
    else:
        darkness = ink.darkness[y0:y1, x0:x1] * own
    crop = np.clip(darkness.astype(np.float32) / ink.level, 0.0, 1.0)
    crop[crop < 0.2] = 0.0  # paper texture and JPEG noise inside the box are not ink
    return crop


def model_input(crop: np.ndarray, spec: Spec) -> Prepared:
    """One digit's float ink -> what the model sees: MNIST's stroke width, box and centring."""
    rows, cols = np.flatnonzero(crop.max(1) > 0.35), np.flatnonzero(crop.max(0) > 0.35)
    if rows.size:
        crop = crop[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    frame = centre_by_mass(fit_box(thicken(crop), spec.digit_box))
    image = (np.clip(frame, 0, 1) * 255).round().astype(np.uint8)
    return Prepared(tensor=normalize(image, spec), image=image)


def searched(light: np.ndarray) -> tuple[np.ndarray, Ink]:
    """(work, ink): the copy of the picture its ink is searched on (at most READ_SIZE long, unless
    only a little longer) and the ink found on it."""
    work = light if max(light.shape) <= READ_SIZE * READ_SLACK else shrink(light, READ_SIZE)
    return work, ink_mask(work)


def read_gray(gray: np.ndarray, spec: Spec, size: tuple[int, int] | None = None,
              max_digits: int = MAX_DIGITS, one: bool = False) -> list[Digit]:
    """A grayscale picture (any polarity, any size) -> its digits in reading order, with each
    reading of ink that may be one wide digit or several touching ones (serve/reading.py's
    `choose` keeps the one the model believes).

    The page is searched on a copy at most READ_SIZE pixels long; `size` is the (width, height)
    the boxes are given in (the uploaded picture, which may have been decoded smaller).
    one: the picture is meant to hold one digit (/predict). Pieces above one another, none beside
    another, are then taken for one digit in several strokes (a faint "1" broken in the middle)
    rather than a column of digits.
    """
    plain_opencv()
    width, height = upload = size or (gray.shape[1], gray.shape[0])
    dark_on_light, darker_stretch = border_paper(gray)
    scale, to_picture = (width / gray.shape[1], height / gray.shape[0]), None  # (the boxes' way back)
    # A sheet on a darker desk: all around it the border misleads; a strip on a side is ink to the rest.
    page = find_page(gray) if not dark_on_light or darker_stretch else None
    if page is not None:
        # The sheet is read upright: its ruling level, its digits as written; boxes are mapped back.
        gray, to_picture = on_page(gray, page)
        dark_on_light = True
    elif not dark_on_light:
        dark_on_light = shaded_paper(gray)
    light = 255 - gray if dark_on_light else gray
    work, ink = searched(light)
    if tilt := ruling_tilt(ink.mask):  # ruling photographed crooked, left as ink: level it, look again
        light, back = on_page(light, levelled(light.shape, tilt, int(percentile(work.ravel(), 50))))  # paper in the new corners
        to_picture = chain(to_picture, back)
        work, ink = searched(light)
    if to_picture is None and fills_frame(ink):  # cropped tight to the ink: the paper level would follow the strokes
        light, to_picture = with_margin(light, MARGIN * max(light.shape), _border(light)[1])
        work, ink = searched(light)
    if to_picture is not None:
        width, height = light.shape[1], light.shape[0]
    segments = segment(ink.mask, alternatives=not one)
    if not segments:
        raise NoDigit("no digit found: too little ink")
    if one and len(segments) > 1 and len({s.line for s in segments}) == len(segments):
        segments = [merge(segments)]
    if len(favoured(segments)) > max_digits:
        raise TooManyDigits(f"the picture holds more than {max_digits} digits; the limit is {max_digits}")
    sx, sy = width / work.shape[1], height / work.shape[0]
    out = []
    for seg in segments:
        x, y, w, h = seg.box
        if to_picture is None:
            box = (int(x * sx), int(y * sy), max(1, round(w * sx)), max(1, round(h * sy)))
        else:
            bx, by, bw, bh = box_on_picture((x * sx, y * sy, w * sx, h * sy), to_picture)
            box = (int(bx * scale[0]), int(by * scale[1]), max(1, round(bw * scale[0])), max(1, round(bh * scale[1])))
        box = within(box, upload)  # (a segment's box may reach past the ink, a turn carry a corner off)
        p = model_input(digit_ink(ink, seg, light), spec)
        out.append(Digit(tensor=p.tensor, image=p.image, box=box, line=seg.line, choice=seg.choice, option=seg.option))
    return out


def candidates_gray(gray: np.ndarray, spec: Spec, size: tuple[int, int] | None = None) -> list[Digit]:
    """A grayscale picture of one digit (any polarity, any size) -> what the model sees: one
    Digit, or, when the only ink on the picture may be one wide digit or digits that touch, both
    readings (`choice` 0; serve/reading.py's `one_digit` lets the model choose).

    The same search as /read's: paper lines, specks and marks beside the digit are left out; a
    picture that clearly holds several digits is refused (SeveralDigits) rather than answered
    with one of them.
    """
    digits = read_gray(gray, spec, size, one=True)
    if len(digits) > 1 and any(d.choice < 0 for d in digits):
        raise SeveralDigits.holding(len(favoured(digits)))
    return digits


def prepare_gray(gray: np.ndarray, spec: Spec, size: tuple[int, int] | None = None) -> Prepared:
    """candidates_gray's one digit, where no model is at hand to choose a reading: the reading the
    shapes favour when every reading is one digit (with or without a mark drawn into it); a picture
    whose ink may be touching digits is refused as several."""
    digits = candidates_gray(gray, spec, size)
    if len(digits) > 1:
        if len({(d.choice, d.option) for d in digits}) < len(digits):  # a reading of several digits
            raise SeveralDigits.holding(len(favoured(digits)))
        return favoured(digits)[0]
    return digits[0]


def candidates(data: bytes, spec: Spec, limits: Limits = Limits()) -> list[Digit]:
    """Encoded image bytes -> candidates_gray; raises only the API's documented errors."""
    img, size = decode_sized(data, limits)
    return candidates_gray(to_gray(img), spec, size)


def prepare(data: bytes, spec: Spec, limits: Limits = Limits()) -> Prepared:
    """Encoded image bytes -> prepare_gray; raises only the API's documented errors."""
    img, size = decode_sized(data, limits)
    return prepare_gray(to_gray(img), spec, size)


def read(data: bytes, spec: Spec, limits: Limits = Limits(), max_digits: int = MAX_DIGITS) -> list[Digit]:
    """Encoded image bytes -> the digits on the picture, in reading order, boxes in its pixels."""
    img, size = decode_sized(data, limits)
    return read_gray(to_gray(img), spec, size, max_digits)
