"""serve/components.py gives what OpenCV's own statistics give, label for label."""
import cv2
import numpy as np
import pytest

from serve.components import components


@pytest.mark.parametrize("dtype", [np.uint8, bool])
def test_labels_boxes_and_areas_are_opencvs(dtype):
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 160, 2))
        mask = rng.random((h, w)) > rng.uniform(0.4, 1.0)  # from empty to crowded
        n, labels, stats = components(mask.astype(dtype))
        n_cv, labels_cv, stats_cv, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        assert n == n_cv
        assert np.array_equal(labels, labels_cv)
        assert np.array_equal(stats[1:], stats_cv[1:, :5])
        assert stats[0].tolist() == [0, 0, w, h, int((~mask).sum())]


def test_a_stroke_and_a_dot_are_two_pieces_with_their_boxes():
    mask = np.zeros((30, 40), bool)
    mask[5:25, 10:13] = True  # an upright stroke
    mask[2, 30] = True  # a dot
    n, labels, stats = components(mask)
    assert n == 3
    boxes = sorted(stats[1:].tolist())
    assert boxes == [[10, 5, 3, 20, 60], [30, 2, 1, 1, 1]]
