"""The numpy 3x3 filters in serve/preprocess.py give exactly what PIL's rank filters give (which they replaced
for speed), on random images of every small shape, edges included."""
import numpy as np
from PIL import Image, ImageFilter

from serve.preprocess import majority3, max3, median3


def pil(a: np.ndarray, f) -> np.ndarray:
    return np.asarray(Image.fromarray(a).filter(f))


def test_filters_match_pil_pixel_for_pixel():
    rng = np.random.default_rng(0)
    for _ in range(300):
        shape = tuple(int(s) for s in rng.integers(1, 40, 2))
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        if rng.random() < 0.5:  # mostly-flat pictures with strokes, like real uploads
            a = np.where(rng.random(shape) < 0.8, np.uint8(rng.integers(0, 256)), a)
        assert np.array_equal(median3(a), pil(a, ImageFilter.MedianFilter(3)))
        assert np.array_equal(max3(a), pil(a, ImageFilter.MaxFilter(3)))
        mask = a > rng.integers(0, 256)
        assert np.array_equal(majority3(mask), pil((mask * 255).astype(np.uint8), ImageFilter.MedianFilter(3)) > 0)
