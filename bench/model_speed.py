"""Model-only speed: the published model under Paddle Inference, the dygraph network, ONNX Runtime;
and how much of the GIL each engine leaves to other threads while it runs (python_share).

Each call measures one engine with one thread setting, so the parent runs it in a fresh process:
  python -m bench.model_speed --engine inference --threads 1 --onednn on --model-dir models
  python -m bench.model_speed --engine dygraph --threads 2 --model-dir models
  python -m bench.model_speed --engine onnxruntime --threads 1 --onnx /tmp/x/model.onnx --model-dir models
  python -m bench.model_speed --convert-onnx /tmp/x --model-dir models   (writes /tmp/x/model.onnx)
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench.common import digits, emit, stats_ms, time_calls


def load(model_dir: str) -> tuple[Path, dict]:
    from serve.model_store import load_manifest, resolve

    path = resolve(model_dir)
    return path, load_manifest(path, verify=True)


def engine(args, path: Path, manifest: dict):
    """A callable float32 [N, 1, 28, 28] -> [N, 10] for the engine asked for."""
    if args.engine == "inference":
        from serve.predictor import Predictor

        return Predictor(path, manifest, threads=args.threads, onednn=args.onednn == "on", ir_optim=args.ir_optim == "on")
    if args.engine == "dygraph":
        import paddle

        from train.models import WithSoftmax, build_model

        paddle.set_device("cpu")
        paddle.base.core.set_num_threads(args.threads)
        cfg = manifest["source"]["training_config"]
        net = WithSoftmax(build_model(cfg["model"], cfg.get("dropout") or 0.0))  # weights do not change the speed
        net.eval()

        def run(x):
            with paddle.no_grad():
                return net(paddle.to_tensor(x)).numpy()

        return run
    if args.engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
        name = manifest["input"]["name"]
        return lambda x: session.run(None, {name: x})[0]
    raise SystemExit(f"unknown engine {args.engine}")


def python_share(run, batch: np.ndarray, seconds: float) -> float:
    """How fast a pure-Python loop runs while another thread keeps calling `run(batch)`, as a fraction
    of its speed alone: ~1 when the engine releases the GIL while it computes (the loop has its own
    core), ~0.5 when they share it like two Python threads, less when the engine holds it through
    each call. In a threaded server worker, that is what the request threads (parsing,
    preprocessing) get while the batcher's thread runs the model."""
    import threading

    def spin() -> int:
        end, k = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            k += 1
        return k

    alone = spin()
    stop = threading.Event()

    def work():
        while not stop.is_set():
            run(batch)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    time.sleep(0.05)  # the engine is running before the loop starts counting
    beside = spin()
    stop.set()
    t.join()
    return round(beside / max(alone, 1), 3)


def convert_onnx(out_dir: Path, path: Path, manifest: dict) -> None:
    from export import onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    for role in ("model", "params"):
        shutil.copy2(path / manifest["files"][role], out_dir / manifest["files"][role])
    onnx.convert(out_dir, manifest["files"])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.model_speed", description=__doc__)
    p.add_argument("--model-dir", default="models")
    p.add_argument("--engine", choices=["inference", "dygraph", "onnxruntime"], default="inference")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--onednn", choices=["on", "off"], default="on")
    p.add_argument("--ir-optim", choices=["on", "off"], default="on", help="Paddle Inference's graph passes (default: on)")
    p.add_argument("--onnx", help="model.onnx for --engine onnxruntime")
    p.add_argument("--batches", default="1,8,64", help="batch sizes for throughput (default: 1,8,64)")
    p.add_argument("--latency-runs", type=int, default=2000, help="batch-1 calls timed for latency (default: 2000)")
    p.add_argument("--images", type=int, default=4096, help="images pushed per throughput batch size (default: 4096)")
    p.add_argument("--budget-s", type=float, default=8.0, help="time cap per measurement (default: 8)")
    p.add_argument("--convert-onnx", metavar="DIR", help="only convert the model to DIR/model.onnx and exit")
    args = p.parse_args(argv)

    path, manifest = load(args.model_dir)
    if args.convert_onnx:
        convert_onnx(Path(args.convert_onnx), path, manifest)
        emit({"onnx": str(Path(args.convert_onnx) / "model.onnx")})
        return
    t = time.perf_counter()
    run = engine(args, path, manifest)
    from train.data import normalize

    x = normalize(digits(64, seed=3))
    run(x[:1])
    setup_s = time.perf_counter() - t
    one = x[:1].copy()
    latency = time_calls(lambda: run(one), warmup=50, runs=args.latency_runs, budget_s=args.budget_s)
    throughput = {}
    for b in [int(s) for s in args.batches.split(",") if s]:
        batch = np.ascontiguousarray(np.resize(x, (b, *x.shape[1:])))
        calls = max(1, args.images // b)
        times = time_calls(lambda: run(batch), warmup=max(3, min(20, calls // 10)), runs=calls, budget_s=args.budget_s)
        throughput[str(b)] = {"images_per_s": round(b * len(times) / sum(times), 1), "call": stats_ms(times)}
    share = python_share(run, np.ascontiguousarray(np.resize(x, (64, *x.shape[1:]))), min(1.0, args.budget_s / 4))
    emit({"engine": args.engine, "threads": args.threads, "onednn": args.onednn if args.engine == "inference" else None,
          "ir_optim": args.ir_optim if args.engine == "inference" else None, "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE"),
          "setup_s": round(setup_s, 3), "latency_batch1": stats_ms(latency), "throughput": throughput,
          "python_share": share})


if __name__ == "__main__":
    main()
