"""`make bench QUICK=1` runs every section and writes valid JSON and markdown. It never asserts a speed:
the smoke run is too short, and the machine running the tests is too busy, for numbers to mean anything."""
import json
import subprocess

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_quick_bench_writes_json_and_markdown(tmp_path, committed_model):
    proc = subprocess.run(["make", "-s", "bench", "QUICK=1", f"BENCH_OUT={tmp_path}", f"BENCH_ARGS=--model-dir {committed_model}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["quick"] is True and result["machine"]["cores"] >= 1
    flags = result["machine"]["cpu_flags"]  # every result says which vector units it ran on
    assert any(f.startswith("avx") for f in flags) and f"flags: {' '.join(flags)}" in (tmp_path / "latest.md").read_text()
    sections = result["sections"]
    assert set(sections) == {"train", "model", "preprocess", "app", "http"}
    assert not [name for name, s in sections.items() if "error" in s], json.dumps(sections, indent=1)[:3000]

    for model in ("cnn", "lenet"):
        for setting in sections["train"]["models"][model]["configs"].values():
            assert setting["rounds"] and all(isinstance(x, float) for x in setting["rounds"]), setting
    for run in sections["model"]["runs"]:
        assert "error" not in run, run
        assert run["latency_batch1"]["n"] > 0 and run["throughput"] and 0 < run["python_share"] < 1.5
    assert {"phone_photo_jpeg", "small_png", "canvas_rgba_png"} <= set(sections["preprocess"])

    http = sections["http"]
    if "skipped" not in http:  # wrk could not be installed here: the rest still ran
        # The make serve defaults, and the container's arrangement: nginx in front of sync workers.
        assert [s["label"] for s in http["servers"]] == ["defaults", "FRONT=nginx,THREADS=1,BATCHING=0"]
        for server in http["servers"]:
            assert "error" not in server, server
            runs = [*server["healthz"].values(), *server["predict"].values(), *server["predict_batch"]["by_concurrency"].values(),
                    *server["v2"].values(), *server["v2_batch"]["by_concurrency"].values(), server["slow_clients"]]
            assert all(r["responses"] > 0 and r["non_2xx_or_errors"] == 0 for r in runs), runs
            assert server["memory"]["workers_unchanged"]
        assert result["targets"] and {"target", "measured", "met"} <= set(result["targets"][0])

    md = (tmp_path / "latest.md").read_text()
    assert md.startswith("# Bench") and "## Model only" in md and "Python beside it" in md


def test_python_share_tells_an_engine_that_releases_the_gil_from_one_that_holds_it():
    """The model bench's GIL probe: a call that sleeps (GIL released) leaves a Python loop its whole
    speed; a call that is itself Python code halves it."""
    import time

    from bench.model_speed import python_share

    assert python_share(lambda b: time.sleep(0.002), None, 0.3) > 0.8
    assert python_share(lambda b: sum(range(20_000)), None, 0.3) < 0.75
