"""Optional ONNX export of a saved Paddle graph (paddle2onnx), checked on ONNX Runtime."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ONNX_FILE = "model.onnx"
OPSET = 13


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import paddle2onnx  # noqa: F401
    except ImportError:
        return False
    return True


def convert(model_dir: Path, files: dict) -> str:
    """Write model.onnx beside the Paddle files and return its name."""
    import paddle2onnx

    # paddle2onnx's optional graph optimizer (polygraphy) would pip-install helpers at run time: keep it off.
    os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")
    paddle2onnx.export(str(model_dir / files["model"]), str(model_dir / files["params"]), str(model_dir / ONNX_FILE),
                       opset_version=OPSET, enable_optimize=False)
    return ONNX_FILE


def run(path: Path, input_name: str, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: batch})[0]
