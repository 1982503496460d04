"""The Open Inference Protocol (KServe v2 / Triton HTTP) as a Flask blueprint under /v2.

Inputs, exactly one per request:
  <manifest input name>  FP32 [N,1,28,28]  already normalized, as the manifest describes
  image_bytes            BYTES [N]         encoded PNG/JPEG files, preprocessed like /predict
                                           (binary data: the raw files; JSON data: base64 strings)
Output: <manifest output name> FP32 [N,10] probabilities, or with parameters.classification = k
the top-k classes as BYTES "<value>:<index>:<label>" [N,k] (Triton's classification extension).
Errors are {"error": "<message>"}: 400 bad request, 404 unknown model/version/path, 405 wrong method,
413 body too large, 503 model not loaded; never 500 for anything a client sends.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
import time

import numpy as np
from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from serve import rejection
from serve.errors import ApiError, BadRequest, NotReady
from serve.kserve_codec import (
    InferRequest,
    bytes_elements,
    classifications,
    decompress,
    encode_response,
    fp32_tensor,
    parse_request,
    serialize_bytes,
    split_body,
)
from serve.inputs import read_body
from serve.preprocess import prepare

log = logging.getLogger("serve")

SERVER_NAME = "digits-paddle"
SERVER_VERSION = "1.0.0"
EXTENSIONS = ["binary_tensor_data", "classification"]
IMAGE_BYTES = "image_bytes"  # the BYTES input of encoded image files
DATATYPES = {"float32": "FP32"}  # manifest dtype -> protocol datatype
_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,", re.IGNORECASE)

bp = Blueprint("kserve", __name__, url_prefix="/v2")


class ModelNotFound(ApiError):
    status, code = 404, "not_found"


def _service():
    return current_app.extensions["digits"]


def _error(message: str, status: int):
    return jsonify({"error": message}), status


@bp.errorhandler(ApiError)
def _api_error(e: ApiError):
    body, status = _error(e.message, e.status)
    return body, status, e.headers()


@bp.errorhandler(HTTPException)
def _http_error(e: HTTPException):
    return _error(e.description or e.name, e.code or 400)


@bp.errorhandler(Exception)
def _unexpected(e: Exception):
    log.exception("unhandled error", extra={"request_id": g.get("request_id")})
    return _error("internal server error", 500)


@bp.before_app_request
def _unrouted_v2():
    """Unknown paths and methods under /v2 answer in the protocol's error shape too."""
    e = request.routing_exception
    if isinstance(e, (NotFound, MethodNotAllowed)) and (request.path == "/v2" or request.path.startswith("/v2/")):
        if isinstance(e, MethodNotAllowed):
            return jsonify({"error": f"method {request.method} is not allowed on {request.path}"}), 405, \
                {"Allow": ", ".join(sorted(e.valid_methods or []))}
        return _error(f"unknown endpoint {request.path}", 404)
    return None


def _model(name: str, version: str | None) -> dict:
    """The served model's manifest when `name` (and `version`, if given) are what this server serves."""
    service = _service()
    if service.manifest is None:
        raise NotReady(f"model not loaded: {service.error}")
    ident = service.identity
    if name != ident["name"]:
        raise ModelNotFound(f"unknown model '{name}': this server serves '{ident['name']}'")
    if version is not None and version != str(ident["version"]):
        refused = {str(v["version"]): v["reason"] for v in service.status()["versions"] if v["state"] == "refused"}
        why = f"it was refused ({refused[version]}); " if version in refused else ""
        raise ModelNotFound(f"version '{version}' of model '{name}' is not served: {why}served is version {ident['version']}")
    return service.manifest


def tensor_metadata(manifest: dict) -> tuple[list[dict], list[dict]]:
    """Model inputs and outputs as $metadata_tensor objects, from the manifest."""
    inp, out = manifest["input"], manifest["output"]
    inputs = [{"name": inp["name"], "datatype": DATATYPES[inp["dtype"]], "shape": list(inp["shape"])},
              {"name": IMAGE_BYTES, "datatype": "BYTES", "shape": [-1]}]
    outputs = [{"name": out["name"], "datatype": DATATYPES[out["dtype"]], "shape": list(out["shape"])}]
    return inputs, outputs


@bp.get("")
def server_metadata():
    return jsonify({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})


@bp.get("/health/live")
def live():
    return Response(status=200)


@bp.get("/health/ready")
def ready():
    return Response(status=200 if _service().ready else 400)


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    manifest = _model(name, version)
    inputs, outputs = tensor_metadata(manifest)
    # "versions" are those a client may request: the served one. Beyond the protocol, as TF Serving's
    # model status does: every version present, its state (serving, refused with the reason, present).
    status = [{**v, "version": str(v["version"])} for v in _service().status()["versions"]]
    return jsonify({"name": manifest["name"], "versions": [str(manifest["version"])],
                    "platform": manifest["format"].replace("-", "_"), "inputs": inputs, "outputs": outputs,
                    "version_status": status})


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    _model(name, version)
    return Response(status=200 if _service().ready else 400)


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    manifest = _model(name, version)
    service = _service()
    if not service.ready:
        raise NotReady(f"model not loaded: {service.error}")
    body = decompress(read_body(request), request.headers.get("Content-Encoding", ""),
                      current_app.config["MAX_CONTENT_LENGTH"])
    doc, binary = split_body(body, request.headers.get("Inference-Header-Content-Length"))
    req = parse_request(doc, binary)
    _check_outputs(req, manifest)
    batch = _input_batch(req, manifest, service)

    t = time.perf_counter()
    probs = service.probabilities(batch)
    metrics = current_app.extensions.get("digits.metrics")
    if metrics is not None:
        metrics.inference.observe(time.perf_counter() - t)
        metrics.batch_size.observe(len(batch))
        metrics.images.inc(len(batch))
    if not np.isfinite(probs).all():
        raise BadRequest("the model produced non-finite probabilities: input values far outside the normalized range?")

    body, headers = encode_response(*_outputs(req, manifest, probs))
    return Response(body, status=200, headers=headers)


def decode_base64(value: str, where: str) -> bytes:
    """A BYTES element sent as JSON: base64 of the file (a data: URL prefix is accepted, as in /predict)."""
    try:
        return base64.b64decode(_DATA_URL.sub("", value.strip()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}: BYTES images in JSON must be base64 strings") from None


def _check_outputs(req: InferRequest, manifest: dict) -> None:
    out_name = manifest["output"]["name"]
    for want in req.outputs or []:
        if want.name != out_name:
            raise BadRequest(f"unexpected inference output '{want.name}' for model '{manifest['name']}': "
                             f"the output is '{out_name}'")


def _input_batch(req: InferRequest, manifest: dict, service) -> np.ndarray:
    """The float32 [N,1,28,28] batch from the one input the request carries."""
    spec = manifest["input"]
    known = {spec["name"], IMAGE_BYTES}
    for inp in req.inputs:
        if inp.name not in known:
            raise BadRequest(f"unexpected inference input '{inp.name}' for model '{manifest['name']}': "
                             f"inputs are '{spec['name']}' (FP32) or '{IMAGE_BYTES}' (BYTES)")
    if len(req.inputs) != 1:
        raise BadRequest(f"send exactly one input: '{spec['name']}' or '{IMAGE_BYTES}'")
    inp = req.inputs[0]
    max_batch = service.config.max_batch
    expected = "BYTES" if inp.name == IMAGE_BYTES else DATATYPES[spec["dtype"]]
    if inp.datatype != expected:
        raise BadRequest(f"inference input '{inp.name}' data-type is '{inp.datatype}', "
                         f"but model '{manifest['name']}' expects '{expected}'")
    want = [-1] if inp.name == IMAGE_BYTES else list(spec["shape"])
    if len(inp.shape) != len(want) or any(w != -1 and w != d for w, d in zip(want, inp.shape)):
        raise BadRequest(f"unexpected shape for input '{inp.name}' for model '{manifest['name']}': "
                         f"expected {want}, got {list(inp.shape)}")
    n = inp.shape[0]
    if not 1 <= n <= max_batch:
        raise BadRequest(f"input '{inp.name}': batch size {n} is outside 1..{max_batch}")
    if inp.name != IMAGE_BYTES:
        return fp32_tensor(inp)
    tensors = []
    for i, data in enumerate(bytes_elements(inp, decode_base64)):
        try:
            tensors.append(prepare(data, service.spec, service.limits).tensor)
        except ApiError as e:
            raise BadRequest(f"input '{IMAGE_BYTES}'[{i}]: {e.message}") from None
    return np.stack(tensors)


def _outputs(req: InferRequest, manifest: dict, probs: np.ndarray) -> tuple[dict, list[bytes]]:
    """The $inference_response object and the binary blobs that follow it."""
    out_name = manifest["output"]["name"]
    wanted = req.outputs
    if wanted is None:
        wanted = [None]  # every output (there is one), default settings
    outputs, blobs = [], []
    for want in wanted:
        binary = req.binary_output if want is None or want.binary is None else want.binary
        k = want.classification if want is not None else 0
        if k:
            rows = classifications(probs, k, manifest.get("labels"))
            for row, p in zip(rows, probs):  # a non-digit says so in its top entry's label: "0.31:4:not_a_digit"
                if rejection.flags(float(p.max()), manifest, _service().config.uncertain_below)[1]:
                    row[0] = ":".join(row[0].split(":")[:2] + [rejection.NOT_A_DIGIT])
            tensor = {"name": out_name, "datatype": "BYTES", "shape": [len(rows), len(rows[0])]}
            flat = [s for row in rows for s in row]
            raw = serialize_bytes([s.encode() for s in flat]) if binary else None
            data = flat
        else:
            tensor = {"name": out_name, "datatype": "FP32", "shape": list(probs.shape)}
            raw = np.ascontiguousarray(probs, dtype="<f4").tobytes() if binary else None
            data = [float(p) for p in probs.ravel()]
        if binary:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = data
        outputs.append(tensor)
    ident = _service().identity
    doc = {"model_name": ident["name"], "model_version": str(ident["version"])}
    if req.id is not None:
        doc["id"] = req.id
    doc["outputs"] = outputs
    return doc, blobs
