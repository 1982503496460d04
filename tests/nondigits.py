"""Evaluation pictures that are not digits, as users upload them (seeded, never used for tuning).

Sources are disjoint from training and tuning: fonts and photos from train/negatives.py's
HELD_OUT_* lists, seeds of their own, and two kinds no training code draws (Bezier doodles and
plain printed glyphs). Drawn pictures become uploads through tests/uploads.py's kinds, as the
MNIST digits of the accuracy tests do; photo crops are sent as the JPEGs they are.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tests.images import encode
from tests.uploads import KINDS as UPLOAD_KINDS
from train import negatives as neg

SEED = 0x7E57_0000  # far from the seeds training (seed + 0x5EED) and export's tuning use


def _as_mnist(gray: np.ndarray) -> np.ndarray:
    """An upload-like picture (dark on light) -> a 28x28 light-on-black drawing, as uploads.py takes."""
    ink = 255.0 - gray
    ink = np.clip((ink - np.median(ink)) / max(ink.max() - np.median(ink), 1) * 255, 0, 255).astype(np.uint8)
    box = Image.fromarray(ink).getbbox() or (0, 0, *ink.shape[::-1])
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    sq = Image.new("L", (side, side), 0)
    sq.paste(Image.fromarray(ink).crop(box), ((side - (x1 - x0)) // 2, (side - (y1 - y0)) // 2))
    out = Image.new("L", (28, 28), 0)
    out.paste(sq.resize((20, 20), Image.Resampling.LANCZOS), (4, 4))
    return np.asarray(out)


def doodle(rng: np.random.Generator) -> np.ndarray:
    """2-4 random cubic Bezier strokes, light on black (a kind no training code draws)."""
    img = Image.new("L", (112, 112), 0)
    draw = ImageDraw.Draw(img)
    t = np.linspace(0, 1, 40)[:, None]
    for _ in range(int(rng.integers(2, 5))):
        p = rng.uniform(10, 102, (4, 2))
        pts = (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3]
        draw.line([tuple(q) for q in pts], fill=255, width=int(rng.integers(4, 10)), joint="curve")
    return np.asarray(img)


def printed(chars: str, rng: np.random.Generator) -> np.ndarray:
    """A plain printed glyph from a held-out font (no handwriting distortion), light on black."""
    fonts = neg.font_files(held_out=True)
    for _ in range(20):
        font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), 80)
        ch = chars[int(rng.integers(len(chars)))]
        if font.getmask(ch).getbbox():
            img = Image.new("L", (112, 112), 0)
            ImageDraw.Draw(img).text((56, 56), ch, font=font, fill=255, anchor="mm")
            return np.asarray(img)
    raise RuntimeError("no held-out font has these glyphs")


def _drawn(kind: str, src: neg.Sources, rng) -> np.ndarray:
    """A 28x28 light-on-black drawing of a non-digit kind."""
    if kind == "doodles":
        return _as_mnist(255 - doodle(rng))
    if kind == "printed":
        return _as_mnist(255 - printed(neg.LETTERS + neg.SYMBOLS, rng))
    return _as_mnist(neg.draw(kind, src, rng))


DRAWN = ("letters", "symbols", "scribbles", "shapes", "doodles", "printed")
PHOTO = ("photos", "textures")


def uploads(n_per_kind: int, seed: int = SEED) -> list[tuple[str, bytes]]:
    """(kind, encoded upload) pairs: drawn kinds through every upload kind in turn, photo crops as JPEG."""
    src = neg.Sources.held_out()
    upload_kinds = sorted(UPLOAD_KINDS)
    out = []
    for k, kind in enumerate(DRAWN + PHOTO):
        for i in range(n_per_kind):
            rng = np.random.default_rng([seed, k, i])
            if kind in PHOTO:
                out.append((kind, encode(Image.fromarray(neg.draw(kind, src, rng)).convert("RGB"), "JPEG", quality=85)))
            else:
                how = upload_kinds[i % len(upload_kinds)]
                out.append((kind, UPLOAD_KINDS[how](_drawn(kind, src, rng), rng)))
    return out
