"""The pure parts of the TorchServe side-by-side bench (bench/torchserve/), without TorchServe, torch or
Java: the handler's preprocessing on generated PNGs, reading both servers' answers, and the comparison."""
import io

import numpy as np
import pytest
from PIL import Image

from bench.torchserve.results import answered_digit, markdown, summarize
from bench.torchserve.transform import to_input
from train.mnist import IMAGE_SIZE, MEAN, STD

ARGS = {"size": IMAGE_SIZE, "mean": MEAN, "std": STD}  # what prepare.py archives as preprocess.json


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_a_28x28_gray_digit_is_only_standardized():
    a = np.zeros((28, 28), np.uint8)
    a[3, 5], a[20, 9] = 255, 128
    x = to_input(png(Image.fromarray(a)), **ARGS)
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    expected = (a.astype(np.float32) / 255 - MEAN) / STD
    np.testing.assert_allclose(x[0], expected, rtol=1e-6)
    assert x[0, 3, 5] == pytest.approx((1 - MEAN) / STD) and x[0, 0, 0] == pytest.approx(-MEAN / STD)


def test_a_larger_colour_upload_becomes_one_gray_28x28_channel():
    a = np.zeros((56, 56, 3), np.uint8)
    a[:, 28:] = (255, 255, 255)  # right half white, left half black
    x = to_input(png(Image.fromarray(a, "RGB")), **ARGS)
    assert x.shape == (1, 28, 28)
    np.testing.assert_allclose(x[0, :, :13], -MEAN / STD, atol=1e-5)
    np.testing.assert_allclose(x[0, :, 15:], (1 - MEAN) / STD, atol=1e-5)


def test_both_servers_answers_read_as_a_digit():
    assert answered_digit('{"digit": 7, "confidence": 0.99, "top_k": [{"digit": 1}]}') == 7
    assert answered_digit("3") == 3


def run(rps, p50, p99, errors=0):
    return {"requests_per_s": rps, "latency_ms": {"p50": p50, "p99": p99}, "non_2xx_or_errors": errors}


def rounds(ours_c8_p99):
    """Two rounds: at concurrency 8 ours does 600 then 300 req/s against TorchServe's 300 and 200."""
    return [{"ours": {"predict": {"1": run(200, 4, 9), "8": run(600, 10, ours_c8_p99[0])}, "floor": {"8": run(2000, 3, 9)}},
             "torchserve": {"predict": {"1": run(100, 8, 20), "8": run(300, 25, 40, errors=2)}, "floor": {"8": run(8000, 1, 5)}}},
            {"ours": {"predict": {"1": run(100, 5, 11), "8": run(300, 12, ours_c8_p99[1])}, "floor": {"8": run(1000, 4, 12)}},
             "torchserve": {"predict": {"1": run(100, 9, 22), "8": run(200, 26, 40)}, "floor": {"8": run(8000, 1, 6)}}}]


def test_the_ratio_is_the_median_of_the_per_round_ratios_and_the_target_needs_both_figures():
    s = summarize(rounds([20, 30]))
    c8 = s["predict"]["8"]
    # per round 2.0 and 1.5: their median, not the ratio of the medians (450 / 250 = 1.8)
    assert c8["ours_over_torchserve_rounds"] == [2.0, 1.5] and c8["ours_over_torchserve"] == 1.75
    assert c8["ours"]["requests_per_s"] == 450 and c8["ours"]["p99_ms"] == 25 and c8["torchserve"]["p99_ms"] == 40
    assert c8["torchserve"]["errors"] == 2 and c8["ours"]["errors"] == 0
    assert s["predict"]["1"]["ours_over_torchserve"] == 1.5  # rounds 2.0 and 1.0
    assert s["floor"]["8"]["ours_over_torchserve"] == pytest.approx(0.19)  # 0.25 and 0.125
    assert s["target_c8"]["met"] is True
    slower_tail = summarize(rounds([50, 60]))  # same throughput, p99 worse than TorchServe's 40 ms
    assert slower_tail["target_c8"]["met"] is False


def test_the_markdown_shows_the_machine_the_rows_and_the_verdict():
    result = {"started": "2026-12-02T05:00:00+00:00", "machine": {"cpu": "AMD EPYC", "cores": 2, "load_avg": [2.0, 1, 1],
                                                                 "cpu_flags": ["avx2", "fma"]},
              "load_avg_end": [3.0, 1, 1], "png_bytes": 178, "rounds": 2, "duration_s": 5.0,
              "torchserve": {"version": "0.12.0", "workers": 2, "omp_num_threads": 1},
              "prepare": {"train_images": 60000, "test_accuracy": 0.98}, "answers": {"ours": 1, "torchserve": 1},
              "summary": summarize(rounds([50, 60]))}
    md = markdown(result)
    assert "AMD EPYC" in md and "avx2 fma" in md and "OMP_NUM_THREADS=1" in md
    assert "| 8 | 450 | 250 | **1.75×** |" in md and "**not met**" in md
    assert "Ours: `make serve` defaults" in md  # and how ours ran, when it was given settings:
    assert "Ours: `FRONT=nginx,THREADS=1`, the committed model" in markdown({**result, "ours_settings": {"FRONT": "nginx", "THREADS": "1"}})
