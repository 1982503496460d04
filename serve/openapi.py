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
    "required": ["digit", "confidence", "probabilities", "top_k", "uncertain", "model"],
    "properties": {
        "digit": {"type": "integer", "minimum": 0, "maximum": 9},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "probabilities": {"type": "array", "items": {"type": "number"}, "minItems": 10, "maxItems": 10},
        "top_k": {"type": "array", "items": {"type": "object", "required": ["digit", "probability"],
                                             "properties": {"digit": {"type": "integer"}, "probability": {"type": "number"}}}},
        "uncertain": {"type": "boolean", "description": "confidence below the server's threshold: may not be a digit"},
        "model": {"$ref": "#/components/schemas/ModelId"},
        "input_image": {"type": "string", "description": "with ?debug=1: the 28x28 input the model saw, as a PNG data URL"},
    },
}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(cfg: ServeConfig) -> dict:
    image_types = list(MEDIA_TYPES.values())
    b64 = {"type": "string", "description": "base64 of a PNG or JPEG file (a data: URL prefix is accepted)"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Digit recognition API", "version": "1.0.0",
                 "description": "Classifies handwritten digits in PNG/JPEG images with a PaddlePaddle model."},
        "paths": {
            "/predict": {"post": {
                "summary": "Classify one image, or several as one batch",
                "parameters": [{"name": "debug", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
                                "description": "1: add the 28x28 image the model saw"}],
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
                    "415": _error(f"Not one of: {', '.join(image_types)} (checked by content, before decoding)"),
                    "422": _error("No digit found: blank or inkless image"),
                    "503": _error("Model not loaded"),
                },
            }},
            "/": {"get": {"summary": "The web page: draw or upload a digit (it calls /predict)", "responses": {
                "200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {
                "200": _json("The process answers", {"type": "object", "properties": {"status": {"type": "string"}}})}}},
            "/readyz": {"get": {"summary": "Readiness: model loaded, checksums verified, warmed up", "responses": {
                "200": _json("Ready", {"type": "object", "required": ["status", "model"], "properties": {
                    "status": {"type": "string"}, "model": {"$ref": "#/components/schemas/ModelId"}}}),
                "503": _json("Not ready, with the reason", {"type": "object", "required": ["status", "error"], "properties": {
                    "status": {"type": "string"}, "error": ERROR["properties"]["error"]}})}}},
            "/v1/models": {"get": {"summary": "The served model's metadata, from its manifest", "responses": {
                "200": _json("Model metadata", {"type": "object", "required": ["models"], "properties": {
                    "models": {"type": "array", "items": {"type": "object", "required": ["name", "version", "input", "labels"]}}}}),
                "503": _error("Model not loaded")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json("OpenAPI document", {"type": "object"})}}},
        },
        "components": {"schemas": {"Error": ERROR, "ModelId": MODEL_ID, "Prediction": PREDICTION}},
    }
