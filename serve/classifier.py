"""The classification core every protocol shares: /predict, /read and /v2 infer are codecs over it.

A Classifier owns what a request to classify goes through, whatever it came in as: readiness (the
version the request holds), limits (images per request; pixels and digits in serve/preprocess.py),
decode -> preprocess -> inference (the service's batcher) -> postprocess (the rejection rule of
serve/rejection.py), the per-request metrics, and per-image faults that carry their index. A codec
parses its protocol into image bytes or a tensor, calls one method, and writes the answer or the
fault (serve/errors.py gives its status) in its protocol's shape.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from serve import rejection
from serve.config import ServeConfig
from serve.errors import ApiError, BadRequest, NotReady, TooLarge, at
from serve.preprocess import Digit, Limits, candidates, read
from serve.reading import choose, one_digit_each


@dataclass(frozen=True)
class Prediction:
    """The model's answer about one image, judged by the rejection rule."""

    probabilities: np.ndarray  # float32 [labels]: what the model's output says
    best: int  # index of the most probable label
    uncertain: bool
    not_a_digit: bool
    image: np.ndarray | None = None  # uint8 28x28, what the model saw (None: the client sent the tensor)

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.best])


class Classifier:
    def __init__(self, service, config: ServeConfig, metrics=None):
        self.service, self.config, self.metrics = service, config, metrics
        self.limits = Limits(max_pixels=config.max_pixels)  # per image, checked from its header before decoding

    # ---- readiness ---------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.service.ready

    def manifest(self) -> dict:
        """The manifest of the version this request holds; NotReady when none is loaded."""
        manifest = self.service.manifest
        if manifest is None:
            raise NotReady(f"model not loaded: {self.service.error}")
        return manifest

    @property
    def identity(self) -> dict:
        return self.service.identity

    def status(self) -> dict:
        """Every version present and its state, the policy, the last reload (serve/service.py)."""
        return self.service.status()

    # ---- limits --------------------------------------------------------------------------------------

    def check_count(self, n: int) -> None:
        """Images in one request: 1..MAX_BATCH. Checked before any image is decoded."""
        if n < 1:
            raise BadRequest("no image in the request")
        if n > self.config.max_batch:
            raise TooLarge(f"{n} images in one request; the limit is {self.config.max_batch}")

    # ---- classify ------------------------------------------------------------------------------------

    def classify(self, images: Sequence[bytes], name: str | None = None) -> list[Prediction]:
        """Encoded PNG/JPEG files -> one Prediction each, in order. A fault about one image carries its
        index; `name` is what the protocol calls the images in a message ("images": "images[2]: ...")."""
        manifest = self.manifest()
        self.check_count(len(images))
        spec, limits = self.service.spec, self.limits
        found = []  # each image's candidates: one digit, or the readings of ink that may be touching digits
        for i, data in enumerate(images):
            try:
                found.append(candidates(data, spec, limits))
            except ApiError as e:
                raise at(e, i, name) from None
        answers = one_digit_each(found, self._infer)  # every image's candidates in one inference
        for i, a in enumerate(answers):
            if isinstance(a, ApiError):
                raise at(a, i, name)
        return self._judge(np.stack([row for row, _ in answers]), manifest, [d.image for _, d in answers])

    def classify_tensor(self, batch: np.ndarray) -> list[Prediction]:
        """A float32 [N, 1, 28, 28] batch the client preprocessed and normalized as the manifest says."""
        manifest = self.manifest()
        self.check_count(len(batch))
        return self._judge(self._infer(batch), manifest, [None] * len(batch))

    def read(self, data: bytes) -> tuple[list[Prediction], list[Digit]]:
        """Every digit on one picture, in reading order, with where each was found."""
        manifest = self.manifest()
        found = read(data, self.service.spec, self.limits, self.config.max_digits)
        probs = self._infer(np.stack([d.tensor for d in found]))  # every reading of ambiguous ink at once
        keep = choose(found, probs)
        found = [found[i] for i in keep]
        return self._judge(probs[keep], manifest, [d.image for d in found]), found

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        probs = self.service.probabilities(batch)  # the batcher: queued with other requests' images
        if not np.isfinite(probs).all():  # only a client-sent tensor far outside the normalized range gets here
            raise BadRequest("the model produced non-finite probabilities: input values far outside the normalized range?")
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(batch))
            self.metrics.images.inc(len(batch))
        return probs

    def _judge(self, probs: np.ndarray, manifest: dict, images: list) -> list[Prediction]:
        out = []
        for row, image in zip(probs, images):
            best = int(np.argmax(row))
            uncertain, not_a_digit = rejection.flags(float(row[best]), manifest, self.config.uncertain_below)
            out.append(Prediction(row, best, uncertain, not_a_digit, image))
        return out

    # ---- postprocess: one prediction as /predict and /read answer it ------------------------------------

    def describe(self, p: Prediction, debug: bool = False) -> dict:
        """`digit` (null for a non-digit: top_k still shows the closest digits), `confidence`,
        `probabilities`, `top_k`, `uncertain`, `not_a_digit`, `model`; with debug, the 28x28 input."""
        labels = self.manifest()["labels"]
        order = np.argsort(-p.probabilities, kind="stable")
        out = {
            "digit": None if p.not_a_digit else int(labels[p.best]),
            "confidence": p.confidence,
            "probabilities": [float(v) for v in p.probabilities],
            "top_k": [{"digit": int(labels[i]), "probability": float(p.probabilities[i])} for i in order[: self.config.top_k]],
            "uncertain": p.uncertain,
            "not_a_digit": p.not_a_digit,
            "model": self.identity,
        }
        if debug and p.image is not None:
            buf = io.BytesIO()
            Image.fromarray(p.image).save(buf, format="PNG")
            out["input_image"] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        return out
