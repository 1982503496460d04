"""python -m export: publish a checkpoint as a verified, versioned model folder under models/."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from export import calibrate as cal
from export.convert import INPUT_NAME, load_checkpoint_model, parity, save_static
from export.publish import discard, publish, staging_dir
from serve.model_store import sha256_file
from serve.predictor import Predictor
from train import checkpoint as ckpt
from train.data import normalize, stratified_split
from train.rundir import Position, RunDir, newest_with_best
from train.mnist import DIGIT_BOX, INPUT_SHAPE, LABELS, MEAN, STD, DataError, load_split, resolve_data_dir

PARITY_TOLERANCE = 1e-5


def newest_run(runs_dir: Path) -> Path:
    run = newest_with_best(runs_dir)
    if run is None:
        raise SystemExit(f"no run with a best checkpoint under {runs_dir}: run `make train` first")
    return run.path


def source_checkpoint(args) -> Path:
    """--checkpoint as given, else the best checkpoint of --run, else of the newest run."""
    if args.checkpoint:
        return Path(args.checkpoint)
    run = RunDir(args.run) if args.run else RunDir(newest_run(Path(args.runs_dir)))
    return run.best_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", help="run folder; its best checkpoint is exported (default: the newest run)")
    src.add_argument("--checkpoint", help="an explicit checkpoint folder (holds model.pdparams and state.json)")
    p.add_argument("--runs-dir", default="runs", help="where to look for the newest run (default: runs)")
    p.add_argument("--models-dir", default="models", help="where to publish (default: models)")
    p.add_argument("--name", help="model name (default: mnist-<architecture>)")
    p.add_argument("--data-dir", help="MNIST folder for the test-set check (default: the checkpoint's, $MNIST_DIR)")
    p.add_argument("--format", choices=["paddle", "onnx"], default="paddle",
                   help="paddle: the Paddle Inference files; onnx: also model.onnx, checked on ONNX Runtime (default: paddle)")
    p.add_argument("--parity-batch", type=int, default=256, help="test images in the parity check (default: 256)")
    p.add_argument("--calibration-digits", type=int, default=cal.Sizes.val,
                   help=f"validation digits for the temperature and threshold (default: {cal.Sizes.val})")
    p.add_argument("--calibration-negatives", type=int, default=cal.Sizes.negatives,
                   help=f"non-digits for the rejection figures, tuning and held out each (default: {cal.Sizes.negatives})")
    return p


def manifest_for(cfg, state, checkpoint: Path, files: dict, name: str) -> dict:
    return {
        "schema": 1,
        "name": name,
        "version": None,  # set at publish time
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "produced_by": "make train + make export (python -m train, python -m export)",
        "format": files["format"],
        "files": {"model": files["model"], "params": files["params"]},
        "input": {
            "name": INPUT_NAME, "shape": [-1, *INPUT_SHAPE], "dtype": "float32", "layout": "NCHW",
            "description": "grayscale digit, light ink on a dark background, as MNIST",
        },
        "preprocessing": {
            "normalization": {"scale": 1 / 255, "mean": MEAN, "std": STD, "formula": "(pixel / 255 - mean) / std"},
            "digit_box": DIGIT_BOX,
            "centering": "centre of mass at the centre of the 28x28 frame",
        },
        "output": {"name": None, "shape": [-1, len(LABELS)], "dtype": "float32", "semantics": "probabilities (softmax)"},
        "labels": list(LABELS),
        "metrics": {},
        "parity": {},
        "source": {
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": sha256_file(checkpoint / ckpt.MODEL_FILE),
            "best_epoch": Position.from_dict(state["position"]).best.epoch,
            "training_config": {k: v for k, v in cfg.to_dict().items() if k != "data"},
            "data": cfg.data,
        },
        "paddle_version": __import__("paddle").__version__,
    }


def same_checkpoint(name_dir: Path, checkpoint_sha256: str) -> dict | None:
    """Published versions exported from this very checkpoint: a new one differs in its calibration only."""
    from serve.model_store import ModelError, load_manifest, versions

    same = []
    for v in versions(name_dir) if name_dir.is_dir() else []:
        try:
            if load_manifest(name_dir / str(v)).get("source", {}).get("checkpoint_sha256") == checkpoint_sha256:
                same.append(v)
        except ModelError:
            continue
    return {"versions": same, "differs_in": "calibration (temperature, not-a-digit logit, threshold), fitted again "
            "by this export; the weights are the same"} if same else None


def output_name(model_dir: Path, files: dict) -> str:
    """The name Paddle gave the graph's output (e.g. fetch_name_0): serving looks it up by this name."""
    import paddle.inference as pi

    config = pi.Config(str(model_dir / files["model"]), str(model_dir / files["params"]))
    config.disable_glog_info()
    return pi.create_predictor(config).get_output_names()[0]


def onnx_parity(staging: Path, files: dict, manifest: dict, predictor, batch: np.ndarray) -> dict:
    """Convert to ONNX and compare ONNX Runtime with Paddle Inference on the parity batch."""
    from export import onnx

    if not onnx.available():
        raise SystemExit("--format onnx needs paddle2onnx and onnxruntime: pip install -r requirements-onnx.txt "
                         "(make export FORMAT=onnx does this)")
    manifest["files"]["onnx"] = onnx.convert(staging, files)
    ours, theirs = predictor(batch), onnx.run(staging / manifest["files"]["onnx"], manifest["input"]["name"], batch)
    return {"max_abs_diff_onnx": float(np.abs(ours - theirs).max()),
            "argmax_equal_onnx": bool((ours.argmax(1) == theirs.argmax(1)).all())}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    checkpoint = source_checkpoint(args)
    model, cfg, state = load_checkpoint_model(checkpoint)
    name = args.name or f"mnist-{cfg.model}"
    try:
        data_dir = resolve_data_dir(args.data_dir or cfg.data.get("dir"))
        test, train = load_split(data_dir, "test"), load_split(data_dir, "train")
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    # load_checkpoint_model refuses the softmax-twice pitfall, so there are always logits to calibrate.
    _, val_idx = stratified_split(train.labels, cfg.val_size, cfg.seed)  # the run's own validation split
    sizes = cal.Sizes(val=args.calibration_digits, negatives=args.calibration_negatives)
    calibration = cal.calibrate(model, train.images[val_idx], train.labels[val_idx], test.images, test.labels,
                                seed=cfg.seed, sizes=sizes, open_set=bool(cfg.negatives) and cfg.open_set == "extra")
    net = cal.Calibrated(model, calibration["temperature"], calibration["reject_logit"])

    staging = staging_dir(Path(args.models_dir), name)
    try:
        files = save_static(net, staging)
        manifest = manifest_for(cfg, state, checkpoint, files, name)
        manifest.update(cal.manifest_sections(calibration, open_set=bool(cfg.negatives)))
        if (same := same_checkpoint(staging.parent, manifest["source"]["checkpoint_sha256"])) is not None:
            manifest["source"]["same_checkpoint_as"] = same
        manifest["output"]["semantics"] = "probabilities, calibrated: " + manifest["calibration"]["method"].split(": ", 1)[1]
        manifest["output"]["name"] = output_name(staging, files)
        predictor = Predictor(staging, manifest)  # exactly as serving will load it

        x = normalize(test.images)
        report = parity(net, staging, predictor, x[: args.parity_batch])
        if args.format == "onnx":
            report.update(onnx_parity(staging, files, manifest, predictor, x[: args.parity_batch]))
        manifest["parity"] = {**report, "tolerance": PARITY_TOLERANCE}
        diffs = [v for k, v in report.items() if k.startswith("max_abs_diff")]
        if max(diffs) > PARITY_TOLERANCE or not all(v for k, v in report.items() if k.startswith("argmax_equal")):
            raise SystemExit(f"parity check failed, nothing published: {report}")

        probs = np.concatenate([predictor(x[i : i + 500]) for i in range(0, len(x), 500)])
        test_acc = float((probs.argmax(1) == test.labels).mean())
        manifest["metrics"] = {
            "val_acc": Position.from_dict(state["position"]).best.val_acc,
            "test_acc": test_acc,
            "test_records": int(len(test)),
            "test_measured_with": "Paddle Inference on the exported files",
        }
        target = publish(staging, manifest)
    except BaseException:
        discard(staging)
        raise
    figure = cal.write_report(calibration, checkpoint.parent / f"export-{name}-{manifest['version']}", f"{name} {manifest['version']}")
    r = manifest["rejection"]
    print(f"  calibration: T = {calibration['temperature']:.3f}, not-a-digit logit {calibration['reject_logit']}, threshold {r['threshold']:.4f} "
          f"(false rejection target {r['false_rejection_target']:.1%}); report {figure.parent}")
    for part in ("validation", "test"):
        f = r[part]
        print(f"  {part}: uploads acc {f['accuracy']:.4f}, flagged {f['false_rejection']:.4f}, "
              f"unflagged acc {f['unflagged_accuracy']:.4f}, ECE {f['ece']:.4f}; non-digits rejected "
              + ", ".join(f"{k} {v['rejected']:.3f}" for k, v in f["non_digits"].items()))
        print(f"    scores (non-digits flagged at the same false-rejection target; AUROC): "
              + ", ".join(f"{k} {v['non_digits_rejected']:.3f} ({v['auroc']:.3f})" for k, v in f["scores"].items()))
    print(f"published {target}")
    print(f"  val acc {manifest['metrics']['val_acc']:.4f}  test acc {test_acc:.4f} (Paddle Inference, {len(test)} images)")
    print(f"  parity: max |dygraph - inference| = {report['max_abs_diff_inference']:.2e}, argmax equal: {report['argmax_equal']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
