"""Paddle Inference predictor for a published model folder: probabilities for a float32 batch.

A predictor is not thread-safe: each serving thread uses its own clone().
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


class Predictor:
    def __init__(self, model_dir: Path, manifest: dict, *, threads: int = 1, onednn: bool = True, _predictor=None):
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
