"""Inference engines for a published model folder: probabilities for a float32 batch.

Paddle Inference is the default engine; ONNX Runtime (BACKEND=onnxruntime) runs the folder's
model.onnx, which only a manifest that lists it with its sha256 may name. make bench
(bench/model_speed.py) measures both side by side: Paddle Inference with oneDNN is within 1.25x of
ONNX Runtime at batch 64, but not at batch 1, where its executor costs about 0.3 ms per run.

A Paddle predictor is not thread-safe: each serving thread uses its own clone().
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from serve.cpu import fast_mkl_on_amd
from serve.model_store import ModelError

BACKENDS = ("paddle", "onnxruntime")


class Predictor:
    """Paddle Inference. ir_optim and oneDNN on is the fastest setting measured here at batch 1 and 64;
    memory_optim is not offered: Paddle 3.3's analysis fails on PIR models with it."""

    def __init__(self, model_dir: Path, manifest: dict, *, threads: int = 1, onednn: bool = True,
                 ir_optim: bool = True, _predictor=None):
        # MKL picks its kernels at its first call: with oneDNN off, sgemm is MKL's.
        fast_mkl_on_amd()
        with warnings.catch_warnings():  # paddle warns at import that ccache (a compiler cache) is missing
            warnings.filterwarnings("ignore", message="No ccache found")
            import paddle.inference as pi  # imported here so that importing serve stays light

        self.model_dir = Path(model_dir)
        self.manifest = manifest
        if _predictor is None:
            files = manifest["files"]
            config = pi.Config(str(self.model_dir / files["model"]), str(self.model_dir / files["params"]))
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads)
            config.disable_glog_info()
            config.switch_ir_optim(ir_optim)
            if onednn:
                config.enable_onednn()
            else:
                config.disable_onednn()
            _predictor = pi.create_predictor(config)
        self._p = _predictor
        self._input = self._p.get_input_handle(manifest["input"]["name"])
        self._output = self._p.get_output_handle(manifest["output"]["name"])

    def clone(self) -> "Predictor":
        """A predictor sharing the weights, for another thread."""
        return Predictor(self.model_dir, self.manifest, _predictor=self._p.clone())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 1, 28, 28], already normalized -> float32 [N, 10] (what the manifest's output says)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        self._p.run()
        return self._output.copy_to_cpu()


class OnnxPredictor:
    """ONNX Runtime on the folder's model.onnx (optional: requirements-onnx.txt). One session serves
    every thread: InferenceSession.run is thread-safe."""

    def __init__(self, model_dir: Path, manifest: dict, *, threads: int = 1):
        name = manifest["files"].get("onnx")
        if not name or name not in manifest.get("sha256", {}):
            raise ModelError(f"{model_dir}: BACKEND=onnxruntime needs a model.onnx listed with its sha256 in the "
                             "manifest (make export FORMAT=onnx)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("BACKEND=onnxruntime: onnxruntime is not installed (pip install -r requirements-onnx.txt)") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.model_dir, self.manifest = Path(model_dir), manifest
        self._session = ort.InferenceSession(str(self.model_dir / name), options, providers=["CPUExecutionProvider"])
        self._input = manifest["input"]["name"]

    def clone(self) -> "OnnxPredictor":
        return self

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[0]


def load_predictor(model_dir: Path, manifest: dict, config) -> Predictor | OnnxPredictor:
    """The engine a ServeConfig asks for (the manifest already verified against its checksums)."""
    if config.backend == "onnxruntime":
        return OnnxPredictor(model_dir, manifest, threads=config.predictor_threads)
    if config.backend != "paddle":
        raise ValueError(f"BACKEND={config.backend!r}: expected one of {', '.join(BACKENDS)}")
    return Predictor(model_dir, manifest, threads=config.predictor_threads, onednn=config.onednn, ir_optim=config.ir_optim)
