"""The Open Inference Protocol (KServe v2 / Triton HTTP) as a Flask blueprint under /v2.

Inputs, exactly one per request:
  <manifest input name>  FP32 [N,1,28,28]  already normalized, as the manifest describes
  image_bytes            BYTES [N]         encoded PNG/JPEG files, preprocessed like /predict
                                           (binary data: the raw files; JSON data: base64 strings)
Output: <manifest output name> FP32 [N,10] probabilities, or with parameters.classification = k
the top-k classes as BYTES "<value>:<index>:<label>" [N,k] (Triton's classification extension).
A codec over the classification core (serve/classifier.py), as /predict is: the same fault gets
the same status as there (serve/errors.py), written as the protocol's {"error": "<message>"}.
"""
from __future__ import annotations

import numpy as np
import werkzeug.exceptions as werkzeug
from flask import Blueprint, Response, current_app, jsonify, request

from serve import rejection
from serve.classifier import Classifier, Prediction
from serve.errors import BadRequest, NotFound, from_http, install_handlers
from serve.inputs import b64_image, read_body
from serve.kserve_codec import (
    InferRequest,
    RequestInput,
    bytes_elements,
    classifications,
    decompress,
    encode_response,
    fp32_tensor,
    parse_request,
    serialize_bytes,
    split_body,
)


SERVER_NAME = "digits-paddle"
SERVER_VERSION = "1.0.0"
EXTENSIONS = ["binary_tensor_data", "classification"]
IMAGE_BYTES = "image_bytes"  # the BYTES input of encoded image files
DATATYPES = {"float32": "FP32"}  # manifest dtype -> protocol datatype

bp = Blueprint("kserve", __name__, url_prefix="/v2")


def _core() -> Classifier:
    return current_app.extensions["digits.classifier"]


# This protocol's error shape, {"error": "<message>"}; the status is serve/errors.py's, the same as
# /predict's for the same fault.
_api_error = install_handlers(bp, lambda e: {"error": e.message})


@bp.before_app_request
def _unrouted_v2():
    """Unknown paths and methods under /v2 answer in the protocol's error shape too."""
    e = request.routing_exception
    if isinstance(e, (werkzeug.NotFound, werkzeug.MethodNotAllowed)) and (request.path == "/v2" or request.path.startswith("/v2/")):
        if isinstance(e, werkzeug.MethodNotAllowed):
            fault = from_http(e)
            fault.message = f"method {request.method} is not allowed on {request.path}"
            return _api_error(fault)
        return _api_error(NotFound(f"unknown endpoint {request.path}"))
    return None


def _model(name: str, version: str | None) -> dict:
    """The served model's manifest when `name` (and `version`, if given) are what this server serves."""
    core = _core()
    manifest = core.manifest()
    ident = core.identity
    if name != ident["name"]:
        raise NotFound(f"unknown model '{name}': this server serves '{ident['name']}'")
    if version is not None and version != str(ident["version"]):
        refused = {str(v["version"]): v["reason"] for v in core.status()["versions"] if v["state"] == "refused"}
        why = f"it was refused ({refused[version]}); " if version in refused else ""
        raise NotFound(f"version '{version}' of model '{name}' is not served: {why}served is version {ident['version']}")
    return manifest


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
    return Response(status=200 if _core().ready else 400)


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    manifest = _model(name, version)
    inputs, outputs = tensor_metadata(manifest)
    # "versions" are those a client may request: the served one. Beyond the protocol, as TF Serving's
    # model status does: every version present, its state (serving, refused with the reason, present).
    status = [{**v, "version": str(v["version"])} for v in _core().status()["versions"]]
    return jsonify({"name": manifest["name"], "versions": [str(manifest["version"])],
                    "platform": manifest["format"].replace("-", "_"), "inputs": inputs, "outputs": outputs,
                    "version_status": status})


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    _model(name, version)
    return Response(status=200 if _core().ready else 400)


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    manifest = _model(name, version)
    body = decompress(read_body(request), request.headers.get("Content-Encoding", ""),
                      current_app.config["MAX_CONTENT_LENGTH"])
    doc, binary = split_body(body, request.headers.get("Inference-Header-Content-Length"))
    req = parse_request(doc, binary)
    _check_outputs(req, manifest)
    inp = _the_input(req, manifest)
    core = _core()
    core.check_count(inp.shape[0])  # before any element is parsed or decoded
    if inp.name == IMAGE_BYTES:
        predictions = core.classify(bytes_elements(inp, b64_image), f"input '{IMAGE_BYTES}'")
    else:
        predictions = core.classify_tensor(fp32_tensor(inp))
    body, headers = encode_response(*_outputs(req, manifest, predictions))
    return Response(body, status=200, headers=headers)


def _check_outputs(req: InferRequest, manifest: dict) -> None:
    out_name = manifest["output"]["name"]
    for want in req.outputs or []:
        if want.name != out_name:
            raise BadRequest(f"unexpected inference output '{want.name}' for model '{manifest['name']}': "
                             f"the output is '{out_name}'")


def _the_input(req: InferRequest, manifest: dict) -> RequestInput:
    """The one input the request carries, checked against the model's metadata: its name, datatype, shape."""
    spec = manifest["input"]
    known = {spec["name"], IMAGE_BYTES}
    for inp in req.inputs:
        if inp.name not in known:
            raise BadRequest(f"unexpected inference input '{inp.name}' for model '{manifest['name']}': "
                             f"inputs are '{spec['name']}' (FP32) or '{IMAGE_BYTES}' (BYTES)")
    if len(req.inputs) != 1:
        raise BadRequest(f"send exactly one input: '{spec['name']}' or '{IMAGE_BYTES}'")
    inp = req.inputs[0]
    expected = "BYTES" if inp.name == IMAGE_BYTES else DATATYPES[spec["dtype"]]
    if inp.datatype != expected:
        raise BadRequest(f"inference input '{inp.name}' data-type is '{inp.datatype}', "
                         f"but model '{manifest['name']}' expects '{expected}'")
    want = [-1] if inp.name == IMAGE_BYTES else list(spec["shape"])
    if len(inp.shape) != len(want) or any(w != -1 and w != d for w, d in zip(want, inp.shape)):
        raise BadRequest(f"unexpected shape for input '{inp.name}' for model '{manifest['name']}': "
                         f"expected {want}, got {list(inp.shape)}")
    return inp


def _outputs(req: InferRequest, manifest: dict, predictions: list[Prediction]) -> tuple[dict, list[bytes]]:
    """The $inference_response object and the binary blobs that follow it."""
    probs = np.stack([p.probabilities for p in predictions])
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
            for row, p in zip(rows, predictions):  # a non-digit says so in its top entry's label: "0.31:4:not_a_digit"
                if p.not_a_digit:
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
    ident = _core().identity
    doc = {"model_name": ident["name"], "model_version": str(ident["version"])}
    if req.id is not None:
        doc["id"] = req.id
    doc["outputs"] = outputs
    return doc, blobs
