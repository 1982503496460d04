"""The Open Inference Protocol (KServe v2) on the wire: pure functions, no Flask, no model.

Request body = JSON header, optionally followed by binary tensor data (Triton's binary tensor data
extension: each binary input carries parameters.binary_data_size, the header length is given by
the Inference-Header-Content-Length HTTP header, and the blobs follow in input order).
Every malformed input raises serve.errors.BadRequest with a message for the client.
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from serve.errors import BadRequest, TooLarge

MAX_RANK = 8  # no tensor this server takes has more dimensions; bounds the work on hostile shapes


@dataclass(frozen=True)
class RequestInput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list | None  # the JSON "data", when the tensor came as JSON
    raw: bytes | None  # the binary blob, when it came as binary data

    @property
    def count(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class RequestOutput:
    name: str
    binary: bool | None  # None: not said, the request-wide binary_data_output decides
    classification: int  # 0: the tensor itself; k > 0: the top-k classes as BYTES strings


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    binary_output: bool  # parameters.binary_data_output
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None  # None: every output, default settings


def _reject_constant(name: str):
    raise BadRequest(f"invalid JSON: {name} is not a number")


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # deflate means zlib-wrapped, as HTTP says


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The request body under its Content-Encoding (identity, gzip or deflate), at most `limit` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in _WBITS:
        raise BadRequest(f"Content-Encoding {encoding!r} is not supported: use gzip, deflate or none")
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"the {encoding} request body cannot be decompressed: {e}") from None
    if len(out) > limit:
        raise TooLarge(f"the decompressed request body is over {limit} bytes")
    if not inflater.eof:
        raise BadRequest(f"the {encoding} request body is truncated")
    return out


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON inference request object and the binary data after it."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
        if not 0 <= n <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
        head, tail = body[:n], body[n:]
    else:
        head, tail = body, b""
    hint = "; binary tensor data needs the Inference-Header-Content-Length header" if header_length is None else ""
    try:
        doc = json.loads(head.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise BadRequest(f"the inference request is not UTF-8 JSON{hint}") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"invalid JSON in the inference request: {e.msg} at position {e.pos}"
                         f"{hint if e.msg == 'Extra data' else ''}") from None
    except RecursionError:
        raise BadRequest("invalid JSON in the inference request: nested too deeply") from None
    if not isinstance(doc, dict):
        raise BadRequest("the inference request must be a JSON object")
    return doc, tail


def _parameters(obj: dict, where: str) -> dict:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise BadRequest(f"{where}: 'parameters' must be a JSON object")
    return params


def _flag(params: dict, key: str, where: str) -> bool | None:
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{where}: parameter '{key}' must be a boolean")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(value, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_int(d) and d >= 0 for d in value):
        raise BadRequest(f"{where}: 'shape' must be a list of non-negative integers")
    if len(value) > MAX_RANK:
        raise BadRequest(f"{where}: 'shape' has {len(value)} dimensions; at most {MAX_RANK} are accepted")
    return tuple(value)


def parse_request(doc: dict, binary: bytes) -> InferRequest:
    """Validate the inference request object and attach each binary blob to its input."""
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    binary_output = bool(_flag(_parameters(doc, "request"), "binary_data_output", "request"))

    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("'inputs' must be a non-empty list of input tensors")
    inputs, offset, seen = [], 0, set()
    for i, item in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be a JSON object")
        name, datatype = item.get("name"), item.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise BadRequest(f"{where}: 'name' and 'datatype' must be strings")
        where = f"input '{name}'"
        if name in seen:
            raise BadRequest(f"{where} is given more than once")
        seen.add(name)
        shape = _shape(item.get("shape"), where)
        params = _parameters(item, where)
        if any(k.startswith("shared_memory") for k in params):
            raise BadRequest(f"{where}: shared memory is not supported by this server")
        size = params.get("binary_data_size")
        if size is None:
            if "data" not in item:
                raise BadRequest(f"{where} has neither 'data' nor parameters.binary_data_size")
            inputs.append(RequestInput(name, datatype, shape, data=item["data"], raw=None))
            continue
        if not _is_int(size) or size < 0:
            raise BadRequest(f"{where}: binary_data_size must be a non-negative integer")
        if "data" in item:
            raise BadRequest(f"{where} has both 'data' and binary_data_size")
        if offset + size > len(binary):
            raise BadRequest(f"{where}: binary_data_size {size} runs past the {len(binary)} bytes of binary data")
        inputs.append(RequestInput(name, datatype, shape, data=None, raw=binary[offset : offset + size]))
        offset += size
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data after the JSON belong to no input")

    raw_outputs = doc.get("outputs")
    outputs = None
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise BadRequest("'outputs' must be a list")
        outputs, names = [], set()
        for i, item in enumerate(raw_outputs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise BadRequest(f"outputs[{i}] must be a JSON object with a string 'name'")
            where = f"output '{item['name']}'"
            if item["name"] in names:
                raise BadRequest(f"{where} is requested more than once")
            names.add(item["name"])
            params = _parameters(item, where)
            if any(k.startswith("shared_memory") for k in params):
                raise BadRequest(f"{where}: shared memory is not supported by this server")
            k = params.get("classification", 0)
            if not _is_int(k) or k < 0:
                raise BadRequest(f"{where}: parameter 'classification' must be a positive integer")
            outputs.append(RequestOutput(item["name"], _flag(params, "binary_data", where), k))
        outputs = outputs or None
    return InferRequest(request_id, binary_output, inputs, outputs)


def _flatten_numbers(data, where: str, limit: int) -> list:
    """Row-major leaves of nested JSON lists; each must be a number (booleans are not)."""
    if not isinstance(data, list):
        raise BadRequest(f"{where}: 'data' must be a list")
    out, stack = [], [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                if len(stack) >= MAX_RANK:
                    raise BadRequest(f"{where}: 'data' is nested deeper than any tensor's shape")
                stack.append(iter(v))
                break
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise BadRequest(f"{where}: 'data' must hold numbers only, found {type(v).__name__}")
            out.append(v)
            if len(out) > limit:
                raise BadRequest(f"{where}: 'data' has more than the {limit} elements its shape holds")
        else:
            stack.pop()
    return out


def fp32_tensor(inp: RequestInput) -> np.ndarray:
    """An FP32 input as a float32 array of its shape; finite values only."""
    where = f"input '{inp.name}'"
    if inp.raw is not None:
        if len(inp.raw) != inp.count * 4:
            raise BadRequest(f"{where}: shape {list(inp.shape)} of FP32 needs {inp.count * 4} bytes, "
                             f"binary_data_size is {len(inp.raw)}")
        array = np.frombuffer(inp.raw, dtype="<f4").astype(np.float32)
    else:
        values = _flatten_numbers(inp.data, where, inp.count)
        if len(values) != inp.count:
            raise BadRequest(f"{where}: shape {list(inp.shape)} holds {inp.count} elements, 'data' has {len(values)}")
        try:
            with np.errstate(over="ignore"):
                array = np.array(values, dtype=np.float64).astype(np.float32)
        except OverflowError:
            raise BadRequest(f"{where}: a value is out of the FP32 range") from None
    if not np.isfinite(array).all():
        raise BadRequest(f"{where}: values must be finite FP32 numbers (no NaN, no infinity)")
    return array.reshape(inp.shape)


def serialize_bytes(elements: list[bytes]) -> bytes:
    """BYTES tensor as binary data: each element a little-endian uint32 length, then its bytes."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def deserialize_bytes(raw: bytes, where: str) -> list[bytes]:
    out, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BadRequest(f"{where}: BYTES data ends inside an element's 4-byte length")
        (n,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + n > len(raw):
            raise BadRequest(f"{where}: a BYTES element of {n} bytes runs past the end of its binary data")
        out.append(raw[offset : offset + n])
        offset += n
    return out


def bytes_elements(inp: RequestInput, decode_json) -> list[bytes]:
    """The elements of a BYTES input, row-major. JSON strings go through decode_json(str, where)."""
    where = f"input '{inp.name}'"
    if inp.raw is not None:
        elements = deserialize_bytes(inp.raw, where)
    else:
        if not isinstance(inp.data, list):
            raise BadRequest(f"{where}: 'data' must be a list of strings")
        flat = _flatten_strings(inp.data, where, inp.count)
        elements = [decode_json(s, f"{where}[{j}]") for j, s in enumerate(flat)]
    if len(elements) != inp.count:
        raise BadRequest(f"{where}: shape {list(inp.shape)} holds {inp.count} elements, got {len(elements)}")
    return elements


def _flatten_strings(data: list, where: str, limit: int) -> list[str]:
    flat = []
    for v in data:
        items = v if isinstance(v, list) else [v]
        for s in items:
            if not isinstance(s, str):
                raise BadRequest(f"{where}: BYTES 'data' must hold strings")
            flat.append(s)
        if len(flat) > limit:
            raise BadRequest(f"{where}: 'data' has more than the {limit} elements its shape holds")
    return flat


def classifications(scores: np.ndarray, k: int, labels: list[str] | None) -> list[list[str]]:
    """Triton's classification extension: per row, the top-k as "<value>:<index>[:<label>]".

    The value is printed like C++ std::to_string (printf %f), as Triton does.
    """
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = []
    for row, idx in zip(scores, order):
        rows.append([f"{float(row[i]):f}:{int(i)}" + (f":{labels[i]}" if labels else "") for i in idx])
    return rows


def encode_response(doc: dict, blobs: list[bytes]) -> tuple[bytes, dict]:
    """The response body and its headers: JSON alone, or JSON then the binary outputs in order."""
    head = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return head, {"Content-Type": "application/json"}
    return head + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(head))}
