"""The OpenAPI 3.1 document of what the server really does (tests check it against the routes)."""
from __future__ import annotations

from serve.config import ServeConfig
from serve.preprocess import MEDIA_TYPES

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}
MODEL_ID = {"type": "object", "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": {"type": "integer"}}}
PREDICTION = {
    "type": "object",
    "required": ["digit", "confidence", "probabilities", "top_k", "uncertain", "not_a_digit", "model"],
    "properties": {
        "digit": {"type": ["integer", "null"], "minimum": 0, "maximum": 9,
                  "description": "null when the picture is not a digit (not_a_digit)"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                       "description": "calibrated: the probability that `digit` is right (the model's top probability)"},
        "probabilities": {"type": "array", "items": {"type": "number"}, "minItems": 10, "maxItems": 10},
        "top_k": {"type": "array", "items": {"type": "object", "required": ["digit", "probability"],
                                             "properties": {"digit": {"type": "integer"}, "probability": {"type": "number"}}}},
        "uncertain": {"type": "boolean", "description": "confidence below the threshold: UNCERTAIN_BELOW, else the one the "
                      "model's manifest chose at export for a stated false-rejection rate on real digits"},
        "not_a_digit": {"type": "boolean", "description": "uncertain, from a model trained to reject non-digits: "
                        "the picture is taken for no digit, `digit` is null and top_k holds the closest digits"},
        "model": {"$ref": "#/components/schemas/ModelId"},
        "input_image": {"type": "string", "description": "with ?debug=1: the 28x28 input the model saw, as a PNG data URL"},
    },
}


# The model versions present and the version policy (serve/service.py ModelService.status).
VERSIONS = {
    "versions": {"type": "array", "items": {"type": "object", "required": ["version", "state"], "properties": {
        "version": {"type": ["integer", "string"]}, "state": {"enum": ["serving", "refused", "present"]},
        "reason": {"type": "string"}}}},
    "policy": {"type": "object", "required": ["mode"], "properties": {
        "mode": {"enum": ["latest", "pinned"]}, "version": {"type": "integer"}, "set_by": {"type": "string"}}},
    "last_reload": {"type": ["object", "null"]},
}


READING = {
    "type": "object",
    "required": ["text", "digits", "uncertain", "model"],
    "properties": {
        "text": {"type": "string", "description": "the digits in reading order; lines of text separated by \\n"},
        "digits": {"type": "array", "items": {  # a /predict answer (less the model, given once) and its box
            **PREDICTION, "required": [*(f for f in PREDICTION["required"] if f != "model"), "box"],
            "properties": {**{k: v for k, v in PREDICTION["properties"].items() if k != "model"}, "box": {
                "type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 4, "maxItems": 4,
                "description": "x, y, width, height in the uploaded picture's pixels, after its EXIF orientation"}}}},
        "uncertain": {"type": "boolean", "description": "true when any digit is uncertain"},
        "model": {"$ref": "#/components/schemas/ModelId"},
    },
}


V2_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
V2_TENSOR = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}}}}
V2_PARAMETERS = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
V2_INFER_REQUEST = {
    "type": "object", "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {**V2_PARAMETERS, "description": "binary_data_output: true returns every output as binary data"},
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "type": "object", "required": ["name", "shape", "datatype"],
            "properties": {
                "name": {"type": "string", "description": "the model's FP32 input (see the model metadata), or image_bytes"},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": ["FP32", "BYTES"]},
                "parameters": {**V2_PARAMETERS, "description": "binary_data_size: the tensor is binary data after the JSON"},
                "data": {"type": "array", "description": "row-major values, flat or nested; BYTES images as base64 strings"},
            }}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "parameters": {**V2_PARAMETERS, "description": "binary_data: bool; classification: k, the top-k as BYTES "
                                                           "'<value>:<index>:<label>'; for a picture taken for no digit the "
                                                           "top entry's label is 'not_a_digit' ('0.31:4:not_a_digit')"}}}},
    },
}
V2_INFER_RESPONSE = {
    "type": "object", "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": {**V2_TENSOR, "properties": {
            **V2_TENSOR["properties"], "parameters": V2_PARAMETERS, "data": {"type": "array"}}}},
    },
}


def _v2_error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V2Error"}}}}


def _v2_paths(cfg: ServeConfig, served: dict) -> dict:
    """The Open Inference Protocol (KServe v2) with Triton's binary_tensor_data and classification extensions.

    `served` is the loaded model's {name, version}: the only values the path parameters accept.
    """
    empty = {"description": "true (empty body)"}

    def path_param(name: str, value) -> list[dict]:
        schema = {"type": "string", "enum": [str(value)]} if value is not None else {"type": "string"}
        return [{"name": name, "in": "path", "required": True, "schema": schema}]

    model = path_param("name", served.get("name"))
    version = path_param("version", served.get("version"))
    metadata = {"get": {"summary": "Model metadata: inputs (the FP32 tensor, and image_bytes: BYTES [N] of PNG/JPEG "
                                   "files preprocessed like /predict), outputs, versions, platform",
                        "responses": {"200": _json("$metadata_model_response", {"type": "object", "required": [
                            "name", "platform", "inputs", "outputs"], "properties": {
                            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                            "platform": {"type": "string"}, "inputs": {"type": "array", "items": V2_TENSOR},
                            "outputs": {"type": "array", "items": V2_TENSOR}}}),
                                      "404": _v2_error("Unknown model or version"), "503": _v2_error("Model not loaded")}}}
    model_ready = {"get": {"summary": "Model readiness", "responses": {
        "200": empty, "400": {"description": "false: not ready"}, "404": _v2_error("Unknown model or version")}}}
    infer = {"post": {
        "summary": "Inference: one input, FP32 [N,1,28,28] normalized as the manifest says, or image_bytes BYTES [N]",
        "parameters": [{"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                        "schema": {"type": "integer"}, "description": "length of the JSON when binary tensor data follows it"},
                       {"name": "Content-Encoding", "in": "header", "required": False,
                        "schema": {"type": "string", "enum": ["identity", "gzip", "deflate"]}}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": V2_INFER_REQUEST},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                                    "description": "the JSON request, then the binary tensor data"}}}},
        "responses": {
            "200": {"description": f"Probabilities FP32 [N,10], or top-k classes; N is at most {cfg.max_batch}",
                    "headers": {"Inference-Header-Content-Length": {
                        "schema": {"type": "integer"}, "description": "with binary outputs: length of the JSON part"}},
                    "content": {"application/json": {"schema": V2_INFER_RESPONSE},
                                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "400": _v2_error("Malformed request, wrong input name, datatype or shape, or an image that cannot be decoded"),
            "404": _v2_error("Unknown model or version"),
            "413": _v2_error(f"Body, or body after decompression, over {cfg.max_upload_bytes} bytes, an image over "
                             f"{cfg.max_pixels} pixels, or more than {cfg.max_batch} images"),
            # image_bytes: the same faults, with the same statuses, as /predict (serve/errors.py)
            "415": _v2_error("An image_bytes element that is not PNG or JPEG (checked by content, before decoding)"),
            "422": _v2_error("An image_bytes element with no digit, or several digits side by side"),
            "503": _v2_error("Model not loaded, or overloaded (with Retry-After)"),
        }}}
    return {
        "/v2": {"get": {"summary": "Server metadata", "responses": {"200": _json("$metadata_server_response", {
            "type": "object", "required": ["name", "version", "extensions"], "properties": {
                "name": {"type": "string"}, "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}}}})}}},
        "/v2/health/live": {"get": {"summary": "Server liveness", "responses": {"200": empty}}},
        "/v2/health/ready": {"get": {"summary": "Server readiness: the model is loaded", "responses": {
            "200": empty, "400": {"description": "false: not ready"}}}},
        "/v2/models/{name}": {"parameters": model, **metadata},
        "/v2/models/{name}/versions/{version}": {"parameters": model + version, **metadata},
        "/v2/models/{name}/ready": {"parameters": model, **model_ready},
        "/v2/models/{name}/versions/{version}/ready": {"parameters": model + version, **model_ready},
        "/v2/models/{name}/infer": {"parameters": model, **infer},
        "/v2/models/{name}/versions/{version}/infer": {"parameters": model + version, **infer},
    }


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _debug(description: str) -> dict:
    """The ?debug= query parameter that /predict and /read share."""
    return {"name": "debug", "in": "query", "required": False,
            "schema": {"type": "string", "enum": ["0", "1", "true", "false"]}, "description": description}


def openapi_document(cfg: ServeConfig, served: dict | None = None) -> dict:
    image_types = list(MEDIA_TYPES.values())
    b64 = {"type": "string", "description": "base64 of a PNG or JPEG file (a data: URL prefix is accepted)"}
    unsupported = _error(f"Not one of: {', '.join(image_types)} (checked by content, before decoding)")  # the same for /predict and /read
    return {
        "openapi": "3.1.0",
        "info": {"title": "Digit recognition API", "version": "1.0.0",
                 "description": "Classifies handwritten digits in PNG/JPEG images with a PaddlePaddle model."},
        "paths": {
            "/predict": {"post": {
                "summary": "Classify one image, or several as one batch",
                "parameters": [_debug("1: add the 28x28 image the model saw")],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": cfg.max_batch}}}},
                    **{t: {"schema": {"type": "string", "format": "binary"}} for t in image_types},
                    "application/json": {"schema": {"oneOf": [
                        {"type": "object", "required": ["image"], "properties": {"image": b64}},
                        {"type": "object", "required": ["images"],
                         "properties": {"images": {"type": "array", "items": b64, "minItems": 1, "maxItems": cfg.max_batch}}},
                    ]}},
                }},
                "responses": {
                    "200": _json("One prediction (field image), or {predictions, model} for a batch (field images)",
                                 {"oneOf": [{"$ref": "#/components/schemas/Prediction"},
                                            {"type": "object", "required": ["predictions", "model"], "properties": {
                                                "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
                                                "model": {"$ref": "#/components/schemas/ModelId"}}}]}),
                    "400": _error("Malformed request, or an image that cannot be decoded"),
                    "413": _error(f"Body over {cfg.max_upload_bytes} bytes, image over {cfg.max_pixels} pixels, "
                                  f"more than {cfg.max_batch} images or {cfg.max_form_parts} form parts"),
                    "415": unsupported,
                    "422": _error("no_digit: blank or inkless image; several_digits: the picture holds several "
                                  "digits (send it to /read)"),
                    "503": _error("Model not loaded, or overloaded (with Retry-After)"),
                },
            }},
            "/read": {"post": {
                "summary": "Read every digit on one picture (a number, several lines): boxes, digits, text",
                "parameters": [_debug("1: add each digit's 28x28 model input")],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                        "image": {"type": "string", "format": "binary"}}}},
                    **{t: {"schema": {"type": "string", "format": "binary"}} for t in image_types},
                    "application/json": {"schema": {"type": "object", "required": ["image"], "properties": {"image": b64}}},
                }},
                "responses": {
                    "200": _json("The digits found, in reading order", {"$ref": "#/components/schemas/Reading"}),
                    "400": _error("Malformed request, several pictures, or an image that cannot be decoded"),
                    "413": _error(f"Body over {cfg.max_upload_bytes} bytes or image over {cfg.max_pixels} pixels"),
                    "415": unsupported,
                    "422": _error(f"no_digit: blank or inkless picture; too_many_digits: more than {cfg.max_digits} digits"),
                    "503": _error("Model not loaded, or overloaded (with Retry-After)"),
                },
            }},
            "/": {"get": {"summary": "The web page: draw or upload a digit (it calls /predict), or read a number (it calls /read)", "responses": {
                "200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {
                "200": _json("The process answers", {"type": "object", "properties": {"status": {"type": "string"}}})}}},
            "/readyz": {"get": {"summary": "Readiness: model loaded, checksums verified, warmed up", "responses": {
                "200": _json("Ready", {"type": "object", "required": ["status", "model", "versions", "policy"], "properties": {
                    "status": {"type": "string"}, "model": {"$ref": "#/components/schemas/ModelId"}, **VERSIONS}}),
                "503": _json("Not ready, with the reason", {"type": "object", "required": ["status", "error"], "properties": {
                    "status": {"type": "string"}, "error": ERROR["properties"]["error"], **VERSIONS}})}}},
            "/v1/models": {"get": {"summary": "The served model's metadata, from its manifest", "responses": {
                "200": _json("Model metadata", {"type": "object", "required": ["models"], "properties": {
                    "models": {"type": "array", "items": {"type": "object", "required": ["name", "version", "input", "labels"]}}}}),
                "503": _error("Model not loaded")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json("OpenAPI document", {"type": "object"})}}},
            **_v2_paths(cfg, served or {}),
        },
        "components": {"schemas": {"Error": ERROR, "ModelId": MODEL_ID, "Prediction": PREDICTION, "Reading": READING,
                                  "V2Error": V2_ERROR}},
    }
