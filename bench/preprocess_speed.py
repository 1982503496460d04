"""Per-image decode + preprocessing time for the uploads users really send (serve/preprocess.py,
serve/ink.py, serve/segment.py), one core (OpenCV is held to one thread by serve/ink.py).

python -m bench.preprocess_speed [--images N] [--repeats R]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import digits, emit, stats_ms


def lined_photo(digit: np.ndarray, rng, width: int, height: int) -> bytes:
    """A phone JPEG of one digit on ruled notebook paper, `width` x `height` pixels."""
    from PIL import Image

    from tests.pages import PENS, paper, photograph, put
    from train.negatives import digit_ink

    size = max(40, height // 5)
    sheet = paper(rng, height, width, "ruled", size)
    put(sheet, digit_ink(digit, size), width // 2 - size // 3, height // 2 - size // 2, PENS[1])
    return photograph(sheet, rng)


def uploads(n: int) -> dict[str, list[bytes]]:
    """n encoded pictures of each kind, made from MNIST digits by the test suite's generators."""
    from tests.images import as_upload, encode
    from tests.pages import picture
    from tests.uploads import canvas_drawing, phone_photo

    ds = digits(n, seed=1)
    rng = np.random.default_rng(7)
    return {
        # The three sizes (targets 0.5 / 3 / 15 ms on one core):
        "png_112": [encode(as_upload(d, 112)) for d in ds],
        "lined_jpeg_1000x750": [lined_photo(d, rng, 1000, 750) for d in ds],
        "jpeg_12mpx": [lined_photo(d, rng, 4000, 3000) for d in ds[: max(2, n // 10)]],  # slow to make: fewer
        "phone_photo_jpeg": [phone_photo(d, rng) for d in ds],
        "small_png": [encode(as_upload(d)) for d in ds],  # 140x140 grey PNG: a scan or a simple client
        "canvas_rgba_png": [canvas_drawing(d, rng) for d in ds],
        # A sheet lying on a darker desk (tests/pages.py): found, turned upright and cut out (serve/page.py).
        "desk_photo_jpeg": [picture("desk_single", i, ds, np.zeros(len(ds), int)).data for i in range(n)],
    }


def measure(kind_images: list[bytes], repeats: int) -> dict:
    from PIL import Image

    from serve.preprocess import Limits, Spec, candidates_gray, decode_sized, to_gray
    from train.mnist import MEAN, STD

    spec, limits = Spec(mean=MEAN, std=STD), Limits()
    total, t_decode, t_gray, t_prepare = [], [], [], []
    for _ in range(repeats):
        for data in kind_images:
            t0 = time.perf_counter()
            img, size = decode_sized(data, limits)
            t1 = time.perf_counter()
            gray = to_gray(img)
            t2 = time.perf_counter()
            # What /predict runs before the model: the ink search, line removal and segmentation of /read
            # too, and each reading of a picture the model is to choose between.
            candidates_gray(gray, spec, size)
            t3 = time.perf_counter()
            total.append(t3 - t0)
            t_decode.append(t1 - t0)
            t_gray.append(t2 - t1)
            t_prepare.append(t3 - t2)
    sizes = [Image.open(__import__("io").BytesIO(d)).size for d in kind_images]
    return {
        "images": len(kind_images),
        "bytes_median": int(np.median([len(d) for d in kind_images])),
        "pixels_median": int(np.median([w * h for w, h in sizes])),
        "total": stats_ms(total),
        "images_per_s_one_core": round(1.0 / float(np.median(total)), 1),
        "stages_median_ms": {"decode": round(float(np.median(t_decode)) * 1000, 4),
                             "to_gray": round(float(np.median(t_gray)) * 1000, 4),
                             "preprocess": round(float(np.median(t_prepare)) * 1000, 4)},
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.preprocess_speed", description=__doc__)
    p.add_argument("--images", type=int, default=40, help="different pictures per kind (default: 40)")
    p.add_argument("--repeats", type=int, default=5, help="passes over them (default: 5)")
    args = p.parse_args(argv)
    kinds = uploads(args.images)
    for data in kinds.values():  # warm-up: imports, decoder tables
        measure(data[:3], 1)
    emit({kind: measure(data, args.repeats) for kind, data in kinds.items()})


if __name__ == "__main__":
    main()
