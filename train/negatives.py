"""Pictures that are not digits, made offline and seeded: what the model learns to reject.

Kinds: letters and symbols rendered from fonts and pushed towards handwriting (stroke width,
brush re-drawing, rotation, shear, elastic distortion), procedural scribbles and shapes, crops of
the photos scikit-image ships, textures and noise. Each picture is drawn as an upload would be
(dark ink on light paper, any size) and then goes through serving's own `prepare_gray`, so the
model trains on exactly what it sees at /predict.

Sources are split once, here: fonts and photos in HELD_OUT_* are never used for training or
tuning; tests/nondigits.py draws its evaluation pictures from them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from serve.errors import NoDigit, SeveralDigits
from serve.preprocess import Spec, prepare_gray, read_gray
from train.mnist import DIGIT_BOX, MEAN, STD

# Glyphs that a writer could mean as a digit (O/0, l/1, Z/2, З/3, Ч/4, S/5, b/6, B/8, ∞/8, g/9 ...) are left out:
# teaching the model that a round "O" is not a digit would teach it to doubt every 0.
LETTERS = "ACEFHKLMNPRUVWXYacdefhkmnprtuvwxyÄÖÜæøåéçñ" + "ΓΔΛΞΠΣΦΨΩαβγηλμπρφψωЖИЛФЦШЩЫЮЯжилфцшщыюя"
SYMBOLS = "#@%&*+=?$<>~^€£¥¶©®≈≠±÷×√∑♥♦♣♠★☆☺♪→←↑↓✓✗"  # no brackets: brushed, they are 1s

FONT_DIRS = ("/usr/share/fonts/truetype", "/usr/share/fonts/opentype")
# Font families reserved for evaluation. STIX ships with matplotlib, so a machine with no font
# packages still has a held-out family; the Makefile installs Liberation, URW Gothic and C059 too.
HELD_OUT_FONTS = ("STIX", "Liberation", "URWGothic", "C059")
# Symbol-only fonts: their letters are boxes or pictograms.
_NOT_TEXT_FONTS = ("Sym", "NonUni", "cmex", "cmsy", "D050000L", "StandardSymbols", "LastResort", "Display")

TRAIN_PHOTOS = ("astronaut", "camera", "rocket", "coins", "moon", "hubble_deep_field", "immunohistochemistry", "clock")
TRAIN_TEXTURES = ("brick", "grass")
HELD_OUT_PHOTOS = ("coffee", "chelsea", "retina", "cell", "colorwheel")
HELD_OUT_TEXTURES = ("gravel",)

CANVAS = 112  # side of the drawing canvas; uploads are larger, prepare_gray does not care


@functools.cache
def font_files(held_out: bool = False) -> tuple[Path, ...]:
    """Text fonts on this machine (matplotlib's bundled ones included), training or held-out set."""
    import matplotlib

    dirs = [Path(matplotlib.get_data_path()) / "fonts" / "ttf", *map(Path, FONT_DIRS)]
    seen: dict[str, Path] = {}
    for d in dirs:
        for p in sorted(d.rglob("*")) if d.is_dir() else []:
            if p.suffix.lower() in (".ttf", ".otf") and not any(s in p.name for s in _NOT_TEXT_FONTS):
                seen.setdefault(p.stem, p)  # the same font from two folders counts once
    return tuple(p for name, p in sorted(seen.items()) if any(name.startswith(h) for h in HELD_OUT_FONTS) == held_out)


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@functools.cache
def skimage_picture(name: str) -> np.ndarray:
    """One of scikit-image's bundled pictures as grayscale uint8 (no download: these ship in the wheel)."""
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 3:
        a = np.asarray(Image.fromarray(a[..., :3].astype(np.uint8)).convert("L"))
    return a.astype(np.uint8)


# --- drawing helpers: float ink maps in [0, 1], light ink on black -------------------------------

def glyph(ch: str, font: Path, rng: np.random.Generator) -> np.ndarray | None:
    """One character at a random size and outline weight; None when the font lacks it."""
    f = _font(font, int(rng.integers(56, 84)))
    if hasattr(f, "getmask") and not f.getmask(ch).getbbox():
        return None
    img = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(img).text((CANVAS // 2, CANVAS // 2), ch, font=f, fill=255, anchor="mm",
                             stroke_width=int(rng.integers(0, 4)), stroke_fill=255)
    return np.asarray(img, np.float32) / 255.0


def brush(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-draw a glyph as a pen would: its skeleton, thickened to a random, even stroke."""
    from skimage.morphology import skeletonize

    skel = skeletonize(ink > 0.5)
    if not skel.any():
        return ink
    width = int(rng.choice([3, 5, 7, 9, 11]))
    img = Image.fromarray(grey_filter(cv2.dilate, (skel * 255).astype(np.uint8), width))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(1.0)), np.float32) / 255.0


def stroke_weight(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thinner or bolder strokes (grey erosion or dilation)."""
    k = int(rng.choice([0, 3, 5]))
    if k == 0:
        return ink
    op = cv2.erode if rng.uniform() < 0.4 else cv2.dilate
    return grey_filter(op, (ink * 255).astype(np.uint8), k).astype(np.float32) / 255.0


def grey_filter(op, img: np.ndarray, k: int) -> np.ndarray:
    """Grey erosion or dilation (cv2.erode / cv2.dilate) by a k x k square: the same pixels as
    Pillow's MinFilter / MaxFilter (edges replicated), ~80x faster."""
    return op(img, np.ones((k, k), np.uint8), borderType=cv2.BORDER_REPLICATE)


def affine(ink: np.ndarray, rng: np.random.Generator, max_deg: float = 25.0) -> np.ndarray:
    """Rotation, shear and anisotropic scale about the centre."""
    a = np.deg2rad(rng.uniform(-max_deg, max_deg))
    sh, sx, sy = rng.uniform(-0.35, 0.35), rng.uniform(0.7, 1.2), rng.uniform(0.7, 1.2)
    fwd = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.array([[sx, sh], [0.0, sy]])
    inv = np.linalg.inv(fwd)
    c = np.array([ink.shape[1], ink.shape[0]]) / 2.0
    off = c - inv @ c
    img = Image.fromarray((ink * 255).astype(np.uint8))
    out = img.transform(img.size, Image.Transform.AFFINE, (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                        resample=Image.Resampling.BILINEAR)
    return np.asarray(out, np.float32) / 255.0


def elastic(ink: np.ndarray, rng: np.random.Generator, alpha: float = 6.0, grid: int = 5) -> np.ndarray:
    """A smooth random displacement field (coarse noise, bicubically upsampled): a wobbly hand."""
    from scipy.ndimage import map_coordinates

    h, w = ink.shape
    field = [np.asarray(Image.fromarray(rng.normal(0, alpha, (grid, grid)).astype(np.float32), "F")
                        .resize((w, h), Image.Resampling.BICUBIC)) for _ in range(2)]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return map_coordinates(ink, [yy + field[0], xx + field[1]], order=1, mode="constant").astype(np.float32)


def handwritten(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rendered glyph pushed towards handwriting."""
    if rng.uniform() < 0.5:
        ink = brush(ink, rng)
    else:
        ink = stroke_weight(ink, rng)
    ink = affine(ink, rng)
    if rng.uniform() < 0.7:
        ink = elastic(ink, rng, alpha=float(rng.uniform(2, 8)))
    return ink


def _polyline(draw: ImageDraw.ImageDraw, pts: np.ndarray, width: int) -> None:
    draw.line([tuple(p) for p in pts], fill=255, width=width, joint="curve")


def scribble(rng: np.random.Generator) -> np.ndarray:
    """Random-walk pen strokes with momentum: loops, zig-zags, crossings-out.

    A walk is redrawn until its path is at least 3x longer than its box is wide: a short, plain
    stroke could be a 1, a 2 or a 7, and the model must not learn to doubt those.
    """
    img = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        for _ in range(20):
            n = int(rng.integers(30, 90))
            turn = rng.normal(0, rng.uniform(0.3, 1.0), n).cumsum()
            step = rng.uniform(2, 6)
            pts = np.cumsum(np.stack([np.cos(turn), np.sin(turn)], 1) * step, 0)
            span = np.ptp(pts, 0).max()
            if span > 0 and n * step / span >= 3:
                break
        pts = (pts - pts.mean(0)) * min(1.0, 90 / max(span, 1)) + CANVAS / 2
        _polyline(draw, np.clip(pts, 4, CANVAS - 4), int(rng.integers(3, 10)))
    return np.asarray(img, np.float32) / 255.0


def shapes(rng: np.random.Generator) -> np.ndarray:
    """Polygons, stars, grids, crosses and arrows: drawn marks that are no digit."""
    img = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(img)
    w = int(rng.integers(3, 10))
    c, r = CANVAS / 2, rng.uniform(25, 45)
    kind = int(rng.integers(0, 4))
    if kind == 0:  # polygon or star
        k = int(rng.integers(3, 8))
        star = rng.uniform() < 0.5
        ang = np.linspace(0, 2 * np.pi, (2 * k if star else k) + 1) + rng.uniform(0, np.pi)
        rad = np.where(np.arange(len(ang)) % 2 == 1, r * 0.45, r) if star else np.full(len(ang), r)
        _polyline(draw, np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], 1), w)
    elif kind == 1:  # grid / hash of several lines
        for _ in range(int(rng.integers(3, 7))):
            p = rng.uniform(15, CANVAS - 15, 4)
            draw.line(tuple(p), fill=255, width=w)
    elif kind == 2:  # a filled blob
        ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        rad = r * rng.uniform(0.5, 1.1, 12)
        draw.polygon([(c + a * np.cos(t), c + a * np.sin(t)) for a, t in zip(rad, ang)], fill=255)
    else:  # an arrow (rings are left out: two of them make an 8)
        a = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(a), np.sin(a)])
        tip, tail = c + d * r, c - d * r
        draw.line((*tail, *tip), fill=255, width=w)
        for s in (2.5, -2.5):
            b = a + np.pi + s / 4
            draw.line((*tip, *(tip + 0.5 * r * np.array([np.cos(b), np.sin(b)]))), fill=255, width=w)
    return np.asarray(img, np.float32) / 255.0


def crop(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of a grayscale picture, resized to the canvas (uint8)."""
    h, w = picture.shape
    side = int(rng.integers(min(h, w) // 8, min(h, w) // 2 + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return np.asarray(Image.fromarray(picture[y : y + side, x : x + side]).resize((CANVAS, CANVAS), Image.Resampling.BILINEAR))


def noise(rng: np.random.Generator) -> np.ndarray:
    """Smooth or grainy random fields, gratings and checkerboards (uint8)."""
    kind = int(rng.integers(0, 3))
    if kind == 0:
        g = int(rng.integers(3, 16))
        a = Image.fromarray((rng.uniform(0, 255, (g, g))).astype(np.uint8)).resize((CANVAS, CANVAS), Image.Resampling.BICUBIC)
        a = np.asarray(a, np.float32) + rng.normal(0, rng.uniform(0, 30), (CANVAS, CANVAS))
    elif kind == 1:
        yy, xx = np.mgrid[0:CANVAS, 0:CANVAS]
        t = rng.uniform(0, np.pi)
        a = 127 + 120 * np.sign(np.sin((np.cos(t) * xx + np.sin(t) * yy) * rng.uniform(0.15, 0.6)))
    else:
        k = int(rng.integers(8, 30))
        yy, xx = np.mgrid[0:CANVAS, 0:CANVAS] // k
        a = ((yy + xx) % 2) * 255.0 + rng.normal(0, 10, (CANVAS, CANVAS))
    return np.clip(a, 0, 255).astype(np.uint8)


def ink_of(gray: np.ndarray) -> np.ndarray:
    """An upload-like picture (dark ink on light paper) -> float ink in [0, 1], light on black."""
    ink = 255.0 - gray.astype(np.float32)
    ink -= np.median(ink)
    return np.clip(ink / max(float(ink.max()), 1.0), 0.0, 1.0)


def as_mnist(ink: np.ndarray) -> np.ndarray:
    """Float ink (light on black) -> uint8 [28, 28] in MNIST's own format: fitted into the 20x20
    digit box, centred by mass."""
    from serve.preprocess import FRAME, centre_by_mass, fit_box

    rows, cols = np.flatnonzero(ink.max(1) > 0.1), np.flatnonzero(ink.max(0) > 0.1)
    if not rows.size:
        return np.zeros((FRAME, FRAME), np.uint8)
    small = centre_by_mass(fit_box(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], DIGIT_BOX))
    return (np.clip(small, 0, 1) * 255).round().astype(np.uint8)


def small_once(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The drawing as it looks after being 28x28 once (as_mnist), scaled back up: the soft,
    blocky strokes of every digit the model trains on. Non-digits drawn only at full resolution
    teach the model to tell crisp from soft rather than digit from not a digit."""
    size = int(rng.integers(56, 2 * CANVAS))
    up = Image.fromarray(as_mnist(ink)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(up, np.float32) / 255.0


def on_paper(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Float ink (light on black) -> an upload-like grayscale picture: dark ink, uneven paper, noise."""
    paper = rng.uniform(170, 255)
    pen = rng.uniform(0, 80)
    gray = paper - ink * (paper - pen)
    gray = gray + rng.normal(0, rng.uniform(0, 6), gray.shape)
    return np.clip(gray, 0, 255).astype(np.uint8)


# --- the kinds ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sources:
    """Where the pictures come from: training/tuning and evaluation use disjoint ones."""

    fonts: tuple[Path, ...]
    photos: tuple[str, ...]
    textures: tuple[str, ...]

    @classmethod
    def for_training(cls) -> "Sources":
        return cls(font_files(False), TRAIN_PHOTOS, TRAIN_TEXTURES)

    @classmethod
    def held_out(cls) -> "Sources":
        return cls(font_files(True), HELD_OUT_PHOTOS, HELD_OUT_TEXTURES)


def _text(chars: str) -> Callable:
    def draw(src: Sources, rng: np.random.Generator) -> np.ndarray:
        for _ in range(20):
            ink = glyph(chars[int(rng.integers(len(chars)))], src.fonts[int(rng.integers(len(src.fonts)))], rng)
            if ink is not None and ink.max() > 0.5:
                return on_paper(handwritten(ink, rng), rng)
        raise NoDigit("no font here has these glyphs")
    return draw


KINDS: dict[str, Callable[[Sources, np.random.Generator], np.ndarray]] = {
    "letters": _text(LETTERS),
    "symbols": _text(SYMBOLS),
    "scribbles": lambda src, rng: on_paper(elastic(scribble(rng), rng), rng),
    "shapes": lambda src, rng: on_paper(affine(shapes(rng), rng), rng),
    "photos": lambda src, rng: crop(skimage_picture(src.photos[int(rng.integers(len(src.photos)))]), rng),
    "textures": lambda src, rng: crop(skimage_picture(src.textures[int(rng.integers(len(src.textures)))]), rng),
    "noise": lambda src, rng: noise(rng),
}
DRAWN = ("letters", "symbols", "scribbles", "shapes")  # pen-drawn kinds: small_once applies to them
# Letters and symbols are what users most often send instead of a digit: they get more weight.
WEIGHTS = {"letters": 0.3, "symbols": 0.2, "scribbles": 0.15, "shapes": 0.1, "photos": 0.1, "textures": 0.05, "noise": 0.1}

SPEC = Spec(mean=MEAN, std=STD, digit_box=DIGIT_BOX)
# What preprocessing refuses before the model sees anything: no digit, or several side by side.
REFUSED = (NoDigit, SeveralDigits)


# A single straight stroke is a 1 to a writer, whatever made it (a brushed bracket, a grating, a
# bar of a shape): negatives this line-like are dropped, or the model learns to doubt plain 1s.
# 95% of MNIST's training 1s are more elongated than 0.30; 0.5% of its other digits are.
STROKE_LIKE = 0.35


def elongation(image: np.ndarray) -> float:
    """Minor over major spread of the ink (0: a straight line, 1: round), from its second moments."""
    ys, xs = np.nonzero(image > 64)
    if len(xs) < 3:
        return 0.0
    low, high = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    return float(np.sqrt(max(low, 0.0) / max(high, 1e-9)))


@dataclass(frozen=True)
class Negatives:
    images: np.ndarray  # uint8 [N, 28, 28]: what the model sees, as MNIST
    kinds: np.ndarray  # str [N]
    refused: dict  # kind -> how many pictures preprocessing refused (REFUSED): rejected before the model
    stroke_like: dict  # kind -> how many were dropped as a single stroke (STROKE_LIKE)
    index: np.ndarray  # int [N]: each picture's draw number, which seeds it (see make)

    @staticmethod
    def merge(parts: "list[Negatives]") -> "Negatives":
        """The parts make() drew on each of several processes, as one make() of all of them would."""
        images, kinds, index = in_draw_order(parts, "images", "kinds")
        total = lambda field: {k: sum(getattr(p, field).get(k, 0) for p in parts) for k in parts[0].refused}
        return Negatives(images, kinds, total("refused"), total("stroke_like"), index)


def in_draw_order(parts: list, *fields: str, index: str = "index") -> list[np.ndarray]:
    """The per-picture `fields` of parts drawn on several processes (each with a field `index` of
    its draw numbers), concatenated in draw order, then those draw numbers: as one process drawing
    them all."""
    drawn = np.concatenate([getattr(p, index) for p in parts])
    order = np.argsort(drawn, kind="stable")
    return [np.concatenate([getattr(p, f) for p in parts])[order] for f in fields] + [drawn[order]]


def draw(kind: str, src: Sources, rng: np.random.Generator) -> np.ndarray:
    """One upload-like grayscale picture of a kind."""
    return KINDS[kind](src, rng)


def choose_kinds(n: int, seed: int, kinds=None) -> np.ndarray:
    """The kind of each of n draws, by WEIGHTS; a function of the seed (draw i is then seeded by (seed, i))."""
    names = list(kinds or KINDS)
    p = np.array([WEIGHTS[k] for k in names])
    return np.random.default_rng([seed, 0x6E6567]).choice(names, size=n, p=p / p.sum())


def make(n: int, seed: int, sources: Sources | None = None, kinds=None, part: tuple[int, int] = (0, 1),
         small_share: float = 0.0) -> Negatives:
    """n pictures (fewer by those preprocessing refuses and the stroke-like ones), kinds drawn by WEIGHTS;
    a function of the seed. part=(i, k): only draws i, i+k, i+2k, ... (one process's share; merge()
    of the k parts equals the whole, since each draw is seeded by its own number). small_share: the
    share of DRAWN kinds made small once (small_once), as soft as MNIST's digits."""
    src = sources or Sources.for_training()
    names = list(kinds or KINDS)
    chosen = choose_kinds(n, seed, names)
    images, got, index, refused, stroke_like = [], [], [], dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    first, step = part
    for i in range(first, n, step):
        kind = chosen[i]
        r = np.random.default_rng([seed, i])
        try:
            gray = draw(kind, src, r)
            once = np.random.default_rng([seed, i, 0x5A11])  # its own stream: the drawing above is unchanged
            if kind in DRAWN and once.uniform() < small_share:
                gray = on_paper(small_once(ink_of(gray), once), once)
            image = prepare_gray(gray, SPEC).image
        except REFUSED:
            refused[kind] += 1
            continue
        if elongation(image) < STROKE_LIKE:
            stroke_like[kind] += 1
            continue
        images.append(image)
        got.append(kind)
        index.append(i)
    return Negatives(np.stack(images) if images else np.zeros((0, 28, 28), np.uint8), np.array(got, dtype=str),
                     refused, stroke_like, np.array(index, np.int64))


# --- digits read wrongly: two as one, one as two -------------------------------------------

# /read offers ambiguous ink several ways (serve/segment.py): digits that touch whole beside the
# cut, a wide digit cut beside whole, and the model's belief chooses (serve/reading.py). A model
# that never saw two digits squeezed into one box reads "66" as a confident "6", and one that never
# saw half a "0" reads it as a "6": the wrong reading wins. These kinds are made from the run's
# own training digits, through serving's reading, so they are what the chooser shows the model.
PAIR_OVERLAP = (0.0, 0.1)  # how far the second of two touching digits reaches back over the first (fraction of their height)
APART = (0.15, 0.5)  # the gap between two digits that do not touch (fraction of their height)
PART = 0.6  # a reading narrower than this fraction of the digit it lies in is a part of it (not the digit, nearly)


def digit_ink(digit: np.ndarray, height: int) -> np.ndarray:
    """An MNIST digit (uint8, light on black) cut to its ink and scaled to `height` pixels: float ink."""
    rows, cols = np.flatnonzero(digit.max(1) > 30), np.flatnonzero(digit.max(0) > 30)
    cut = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    width = max(2, round(cut.shape[1] * height / cut.shape[0]))
    return np.asarray(Image.fromarray(cut).resize((width, height), Image.Resampling.BICUBIC), np.float32) / 255.0


def two_digits(digits: np.ndarray, rng: np.random.Generator, gap: float) -> tuple[np.ndarray, list[tuple]]:
    """(picture, boxes): two training digits side by side with uneven sizes and baselines, on
    paper, the second `gap` x their size right of the first (negative: reaching back over it);
    boxes are where each digit's ink lies (x, y, w, h)."""
    size = int(rng.integers(40, 100))
    a, b = (digit_ink(digits[int(rng.integers(len(digits)))], int(size * rng.uniform(0.85, 1.15))) for _ in range(2))
    x_b = max(1, a.shape[1] + int(round(gap * size)))
    y_a, y_b = (int(size * rng.uniform(-0.1, 0.1)) for _ in range(2))
    top, pad = min(y_a, y_b), size // 2
    h = max(y_a + a.shape[0], y_b + b.shape[0]) - top
    w = max(a.shape[1], x_b + b.shape[1])
    ink = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    boxes = []
    for d, x, y in ((a, 0, y_a), (b, x_b, y_b)):
        region = ink[pad + y - top : pad + y - top + d.shape[0], pad + x : pad + x + d.shape[1]]
        np.maximum(region, d, out=region)
        boxes.append((pad + x, pad + y - top, d.shape[1], d.shape[0]))
    return on_paper(ink, rng), boxes


def pair_read_whole(digits: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Two training digits touching, as the model sees them when the reading takes them for one
    (none when no reading does: digits that do not touch are never offered as one)."""
    gray, (a, b) = two_digits(digits, rng, -rng.uniform(*PAIR_OVERLAP))
    x0, x1 = a[0], b[0] + b[2]
    slack = 0.1 * (x1 - x0)  # the reading's box is the ink's, which the bicubic edges may shrink
    return [d.image for d in read_gray(gray, SPEC) if d.box[0] <= x0 + slack and d.box[0] + d.box[2] >= x1 - slack][:1]


def digit_read_in_parts(digits: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Two training digits apart, as the model sees the parts of either when a reading cuts it
    (none when no reading does: most digits are narrower than a cut is offered for)."""
    gray, boxes = two_digits(digits, rng, rng.uniform(*APART))
    out = []
    for d in read_gray(gray, SPEC):
        cx = d.box[0] + d.box[2] / 2
        if any(x <= cx <= x + w and d.box[2] < PART * w for x, _, w, _ in boxes) and elongation(d.image) >= STROKE_LIKE:
            out.append(d.image)  # a part shaped like a plain stroke is a 1 to a writer: left out, as in make()
    return out[:2]


FROM_DIGITS = {"pairs": (pair_read_whole, 0x9A12), "parts": (digit_read_in_parts, 0x9A27)}


def from_digits(kind: str, n: int, seed: int, digits: np.ndarray, part: tuple[int, int] = (0, 1)) -> Negatives:
    """n draws of a FROM_DIGITS kind made from `digits` (training digits only), a function of the
    seed; part as in make(). Draws that give no picture count as refused."""
    make_one, salt = FROM_DIGITS[kind]
    images, index, refused = [], [], 0
    for i in range(part[0], n, part[1]):
        try:
            got = make_one(digits, np.random.default_rng([seed, i, salt]))
        except REFUSED:
            got = []
        refused += not got
        images += got
        index += [i] * len(got)
    return Negatives(np.stack(images) if images else np.zeros((0, 28, 28), np.uint8), np.array([kind] * len(images), dtype=str),
                     {kind: refused}, {kind: 0}, np.array(index, np.int64))


if __name__ == "__main__":  # python -m train.negatives OUT.png: a contact sheet to look at
    import sys
    import time

    t = time.perf_counter()
    neg = make(int(sys.argv[2]) if len(sys.argv) > 2 else 256, seed=1)
    print(f"{len(neg.images)} negatives in {time.perf_counter() - t:.1f} s; refused {neg.refused}; "
          f"fonts: {len(font_files(False))} training, {len(font_files(True))} held out")
    k = int(np.ceil(np.sqrt(len(neg.images))))
    sheet = np.zeros((k * 28, k * 28), np.uint8)
    for i, im in enumerate(neg.images):
        sheet[(i // k) * 28 : (i // k + 1) * 28, (i % k) * 28 : (i % k + 1) * 28] = im
    Image.fromarray(sheet).resize((k * 56, k * 56), Image.Resampling.NEAREST).save(sys.argv[1])
