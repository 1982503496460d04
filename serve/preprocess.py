"""Uploaded image bytes -> the normalized 28x28 array the model was trained on.

Real uploads are photos, scans and canvas drawings: dark ink on light paper, any size, the digit
anywhere. MNIST is light ink on black, size-normalized into a 20x20 box and centred by centre of
mass in 28x28. Each step below is a pure function, composed by `prepare`.
"""
from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, ImageStat

from serve.errors import BadImage, NoDigit, TooLarge, UnsupportedType

# Allowed formats, recognised by their magic bytes before any decoder runs. PNG covers canvas
# exports and scans, JPEG covers phone photos; everything else is refused unparsed.
MAGIC = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}

_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")

WORK_SIZE = 256  # longest side for the ink search: enough for a 20x20 result, cheap to filter
FRAME = 28
MIN_CONTRAST = 32  # grey levels between paper and ink below which we call the image blank
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
    fmt = sniff_format(data)
    try:
        img = Image.open(io.BytesIO(data), formats=[fmt])
        w, h = img.size
        if w <= 0 or h <= 0:
            raise BadImage("image has no pixels")
        if w * h > limits.max_pixels:
            raise TooLarge(f"image is {w}x{h} = {w * h} pixels; the limit is {limits.max_pixels}")
        if fmt == "JPEG":
            # Let libjpeg decode at 1/2..1/8 scale when the photo is far larger than we need.
            img.draft("RGB" if img.mode not in ("L", "1") else "L", (WORK_SIZE * 2, WORK_SIZE * 2))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # in place: a returned copy would double the peak memory
        return img
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
    img = Image.fromarray(gray).resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BOX)
    return np.asarray(img)


def is_dark_on_light(gray: np.ndarray) -> bool:
    """Paper is what dominates the image border: light paper means dark ink, the usual upload."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return bool(np.median(border) > 127)


# 3x3 filters in numpy, pixel for pixel what PIL's MedianFilter(3) / MaxFilter(3) give (edges
# replicated), several times faster: PIL's rank filter sorts every window and was the hot spot.
def _windows(a: np.ndarray) -> list[np.ndarray]:
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return [p[i : i + h, j : j + w] for i in range(3) for j in range(3)]


# A 19-exchange sorting network whose middle output is the median of 9 (Paeth; Devillard's opt_med9).
_MEDIAN9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
            (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def median3(a: np.ndarray) -> np.ndarray:
    """3x3 median of a uint8 image."""
    v = _windows(a)
    for i, j in _MEDIAN9:
        v[i], v[j] = np.minimum(v[i], v[j]), np.maximum(v[i], v[j])
    return v[4]


def majority3(mask: np.ndarray) -> np.ndarray:
    """3x3 median of a boolean image: at least 5 of the 9 pixels set."""
    p = np.pad(mask, 1, mode="edge").view(np.uint8)
    rows = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
    return rows[:-2] + rows[1:-1] + rows[2:] >= 5


def max3(a: np.ndarray) -> np.ndarray:
    """3x3 maximum (grey dilation) of a uint8 image."""
    p = np.pad(a, 1, mode="edge")
    rows = np.maximum(np.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])
    return np.maximum(np.maximum(rows[:-2], rows[1:-1]), rows[2:])


def ink_levels(light: np.ndarray) -> tuple[float, float]:
    """(paper, ink) grey levels of a light-ink image; NoDigit when they are too close to tell apart."""
    paper = float(np.median(light))
    # The brightest ink after a 3x3 median: one hot pixel or a JPEG speck is not a stroke.
    # Shortcut, same answer: the median reaches the brightest level iff 5 of some 3x3 window hold it.
    brightest = light.max()
    top = float(brightest if majority3(light == brightest).any() else median3(light).max())
    if top - paper < MIN_CONTRAST:
        raise NoDigit("no digit found: the image is blank or has too little contrast")
    return paper, top


def ink_map(light: np.ndarray, paper: float, top: float) -> np.ndarray:
    """Float [0, 1] ink intensity with the paper level removed."""
    ink = np.clip((light.astype(np.float32) - paper) / (top - paper), 0.0, 1.0)
    ink[ink < 0.2] = 0.0  # paper texture, JPEG noise and shadows are not ink
    return ink


def ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (top, bottom, left, right) of the ink, ignoring isolated specks."""
    mask = ink > 0.35
    clean = majority3(mask)
    if clean.sum() >= 4:
        mask = clean
    if mask.sum() < 4:
        raise NoDigit("no digit found: too little ink")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing: twice its area over its perimeter."""
    area = mask.sum()
    edges = np.count_nonzero(np.diff(mask, axis=0)) + np.count_nonzero(np.diff(mask, axis=1))
    edges += mask[0].sum() + mask[-1].sum() + mask[:, 0].sum() + mask[:, -1].sum()
    return 2.0 * area / max(edges, 1)


def thicken(crop: np.ndarray) -> np.ndarray:
    """Dilate strokes that are much thinner than MNIST's, relative to the digit's size."""
    target = STROKE_FRACTION * max(crop.shape)
    width = stroke_width(crop > 0.35)
    img = (crop * 255).astype(np.uint8)
    grow = int(round((target - width) / 2))  # each 3x3 max filter adds one pixel per side
    for _ in range(min(max(grow, 0), 8)):
        img = max3(img)
    out = img.astype(np.float32) / 255.0
    # MNIST strokes have saturated cores; a faint pen or a thin stroke's blur should not look grey.
    core = np.percentile(out[out > 0.35], 90) if (out > 0.35).any() else 1.0
    return np.clip(out / max(core, 1e-3), 0.0, 1.0)


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
    total = digit.sum()
    ys, xs = np.indices(digit.shape)
    cy, cx = ((ys * digit).sum() / total, (xs * digit).sum() / total) if total > 0 else (h / 2, w / 2)
    top = int(np.clip(round(frame / 2 - cy - 0.5), 0, frame - h))
    left = int(np.clip(round(frame / 2 - cx - 0.5), 0, frame - w))
    out = np.zeros((frame, frame), np.float32)
    out[top : top + h, left : left + w] = digit
    return out


def normalize(image_u8: np.ndarray, spec: Spec) -> np.ndarray:
    """uint8 [28, 28] -> float32 [1, 28, 28] with the manifest's normalization."""
    return ((image_u8.astype(np.float32) * spec.scale - spec.mean) / spec.std)[None]


def prepare_gray(gray: np.ndarray, spec: Spec) -> Prepared:
    """A grayscale picture of a digit (any polarity, any size) -> what the model sees.

    The ink is located on a small copy, then cut from the full-resolution picture, so a small
    digit on a large page keeps its detail.
    """
    light = 255 - gray if is_dark_on_light(gray) else gray
    small = shrink(light)
    paper, top = ink_levels(small)
    t, b, l, r = ink_box(ink_map(small, paper, top))
    fy, fx = light.shape[0] / small.shape[0], light.shape[1] / small.shape[1]
    region = light[max(0, int((t - 1) * fy)) : int(np.ceil((b + 1) * fy)), max(0, int((l - 1) * fx)) : int(np.ceil((r + 1) * fx))]
    ink = ink_map(shrink(region), paper, top)
    t, b, l, r = ink_box(ink)
    crop = thicken(ink[t:b, l:r])
    frame = centre_by_mass(fit_box(crop, spec.digit_box))
    image = (np.clip(frame, 0, 1) * 255).round().astype(np.uint8)
    return Prepared(tensor=normalize(image, spec), image=image)


def prepare(data: bytes, spec: Spec, limits: Limits = Limits()) -> Prepared:
    """Encoded image bytes -> Prepared; raises only the API's documented errors."""
    return prepare_gray(to_gray(decode(data, limits)), spec)
