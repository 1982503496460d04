"""Dygraph checkpoint -> static graph with softmax, saved by paddle.jit.save; and the parity check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
from paddle.static import InputSpec

from train import checkpoint as ckpt
from train.config import TrainConfig
from train.mnist import INPUT_SHAPE
from train.models import build_model

INPUT_NAME = "image"
PREFIX = "inference"


def load_checkpoint_model(checkpoint: Path):
    """Rebuild the network from the checkpoint's own config and load its weights (eval mode).

    A checkpoint of the softmax-twice pitfall (the experiment table's demonstration, stuck near
    chance) is refused: nothing that serves is ever built with it.
    """
    state = ckpt.read_state(checkpoint)
    cfg = TrainConfig.from_dict(state["config"]).resolved()
    if cfg.softmax_in_model:
        raise SystemExit(f"{checkpoint} was trained with softmax inside the model (the course's pitfall, "
                         "kept for the experiment table only): not exportable")
    model = build_model(cfg.model, cfg.dropout)
    ckpt.load_into(checkpoint, model)
    model.eval()
    return model, cfg, state


def save_static(net, out_dir: Path) -> dict:
    """to_static + jit.save into out_dir; return the files Paddle really wrote, by role."""
    spec = [InputSpec([None, *INPUT_SHAPE], "float32", INPUT_NAME)]
    static = paddle.jit.to_static(net, input_spec=spec, full_graph=True)
    paddle.jit.save(static, str(out_dir / PREFIX))
    return detect_files(out_dir)


def detect_files(out_dir: Path) -> dict:
    """Paddle 3 writes <prefix>.json (PIR); older formats write <prefix>.pdmodel. Look, don't assume."""
    params = out_dir / f"{PREFIX}.pdiparams"
    for suffix, fmt in ((".json", "paddle-pir"), (".pdmodel", "paddle-program")):
        graph = out_dir / f"{PREFIX}{suffix}"
        if graph.is_file() and params.is_file():
            return {"model": graph.name, "params": params.name, "format": fmt}
    raise RuntimeError(f"paddle.jit.save wrote no recognised model files into {out_dir}: {sorted(p.name for p in out_dir.iterdir())}")


def parity(net, out_dir: Path, predictor, batch: np.ndarray) -> dict:
    """Run one batch through the dygraph model, the reloaded static model and Paddle Inference."""
    with paddle.no_grad():
        dygraph = net(paddle.to_tensor(batch)).numpy()
        loaded = paddle.jit.load(str(out_dir / PREFIX))
        loaded.eval()
        static = loaded(paddle.to_tensor(batch)).numpy()
    inference = predictor(batch)
    return {
        "batch": int(len(batch)),
        "max_abs_diff_static": float(np.abs(dygraph - static).max()),
        "max_abs_diff_inference": float(np.abs(dygraph - inference).max()),
        "argmax_equal": bool((dygraph.argmax(1) == static.argmax(1)).all() and (dygraph.argmax(1) == inference.argmax(1)).all()),
    }
