"""The Open Inference Protocol codec on its own: parsing, binary data, classification strings."""
import gzip
import json
import zlib

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from serve.errors import BadRequest, TooLarge
from serve.kserve_codec import (
    bytes_elements,
    classifications,
    decompress,
    deserialize_bytes,
    encode_response,
    fp32_tensor,
    parse_request,
    serialize_bytes,
    split_body,
)


def request(inputs, outputs=None, **extra) -> dict:
    doc = {"inputs": inputs, **extra}
    if outputs is not None:
        doc["outputs"] = outputs
    return doc


def test_bytes_serialization_matches_tritonclient():
    elements = [b"", b"\x89PNG\r\n\x1a\n\x00\x00", "0.5:3:3".encode()]
    ours = serialize_bytes(elements)
    assert ours == serialize_byte_tensor(np.array(elements, dtype=np.object_)).item()
    assert list(deserialize_bytes_tensor(ours)) == elements
    assert deserialize_bytes(ours, "x") == elements


@pytest.mark.parametrize("raw", [b"\x05\x00\x00", b"\x05\x00\x00\x00abc"])
def test_truncated_bytes_are_a_bad_request(raw):
    with pytest.raises(BadRequest):
        deserialize_bytes(raw, "x")


def test_split_body_with_and_without_binary_data():
    head = json.dumps(request([{"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}])).encode()
    blob = np.array([1.5, -2], "<f4").tobytes()
    doc, tail = split_body(head + blob, str(len(head)))
    assert tail == blob
    req = parse_request(doc, tail)
    assert fp32_tensor(req.inputs[0]).tolist() == [1.5, -2.0]
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length"):
        split_body(head + blob, None)
    for bad in ("x", "-1", str(len(head) + 100)):
        with pytest.raises(BadRequest):
            split_body(head + blob, bad)


@pytest.mark.parametrize("doc, binary, message", [
    ({"inputs": []}, b"", "non-empty"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}, b"", "neither"),
    ({"inputs": [{"name": "a", "shape": [-1], "datatype": "FP32", "data": [1]}]}, b"", "non-negative"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}, b"1234", "runs past"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}, b"12345", "belong to no input"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}] * 2}, b"", "more than once"),
    ({"id": 5, "inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]}, b"", "'id'"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1],
                  "parameters": {"shared_memory_region": "r"}}]}, b"", "shared memory"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}],
      "outputs": [{"name": "o", "parameters": {"classification": -1}}]}, b"", "classification"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}],
      "parameters": {"binary_data_output": "yes"}}, b"", "boolean"),
])
def test_malformed_requests_are_bad_requests(doc, binary, message):
    with pytest.raises(BadRequest, match=message):
        parse_request(doc, binary)


@pytest.mark.parametrize("data, message", [
    ([1, 2, 3], "holds 4 elements"),
    ([1, 2, 3, 4, 5], "more than"),
    ([[1, 2], [3, True]], "numbers only"),
    ([[1, 2], [3, "4"]], "numbers only"),
    ([1, 2, 3, 1e39], "finite"),
    ([1, 2, 3, 10**400], "FP32 range"),
    ([[[[[[[[[[1]]]]]]]]], 2, 3, 4], "nested"),
])
def test_fp32_json_data_is_checked(data, message):
    req = parse_request(request([{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": data}]), b"")
    with pytest.raises(BadRequest, match=message):
        fp32_tensor(req.inputs[0])


def test_fp32_json_data_flat_or_nested_is_row_major():
    for data in ([1, 2, 3, 4], [[1, 2], [3, 4]]):
        req = parse_request(request([{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": data}]), b"")
        assert fp32_tensor(req.inputs[0]).tolist() == [[1, 2], [3, 4]]


def test_binary_fp32_size_must_match_shape():
    req = parse_request(request([{"name": "a", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]),
                        np.zeros(2, "<f4").tobytes())
    with pytest.raises(BadRequest, match="needs 12 bytes"):
        fp32_tensor(req.inputs[0])
    nan = np.array([np.nan], "<f4").tobytes()
    req = parse_request(request([{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]), nan)
    with pytest.raises(BadRequest, match="finite"):
        fp32_tensor(req.inputs[0])


def test_bytes_elements_binary_and_json():
    raw = serialize_bytes([b"ab", b"c"])
    req = parse_request(request([{"name": "b", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}]), raw)
    assert bytes_elements(req.inputs[0], None) == [b"ab", b"c"]
    req = parse_request(request([{"name": "b", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}]), b"")
    assert bytes_elements(req.inputs[0], lambda s, where: s.encode() * 2) == [b"xx", b"yy"]
    req = parse_request(request([{"name": "b", "shape": [3], "datatype": "BYTES", "data": ["x", "y"]}]), b"")
    with pytest.raises(BadRequest, match="holds 3"):
        bytes_elements(req.inputs[0], lambda s, where: s.encode())
    req = parse_request(request([{"name": "b", "shape": [1], "datatype": "BYTES", "data": [1]}]), b"")
    with pytest.raises(BadRequest, match="strings"):
        bytes_elements(req.inputs[0], lambda s, where: s.encode())


def test_classification_strings_follow_triton():
    scores = np.array([[1.1, 3.3, 0.5, 2.4]], np.float32)
    assert classifications(scores, 2, None) == [["3.300000:1", "2.400000:3"]]
    assert classifications(scores, 2, ["a", "b", "c", "d"]) == [["3.300000:1:b", "2.400000:3:d"]]
    assert len(classifications(scores, 99, None)[0]) == 4  # k is capped at the number of classes


def test_encode_response_headers():
    body, headers = encode_response({"outputs": []}, [])
    assert headers["Content-Type"] == "application/json" and json.loads(body) == {"outputs": []}
    body, headers = encode_response({"outputs": []}, [b"\x00\x01", b"\x02"])
    n = int(headers["Inference-Header-Content-Length"])
    assert json.loads(body[:n]) == {"outputs": []} and body[n:] == b"\x00\x01\x02"


def test_decompress_gzip_deflate_and_limits():
    body = b'{"inputs": []}' * 100
    assert decompress(body, "", 10_000) == body and decompress(body, "identity", 10_000) == body
    assert decompress(gzip.compress(body), "gzip", 10_000) == body
    assert decompress(zlib.compress(body), "Deflate", 10_000) == body
    with pytest.raises(TooLarge):
        decompress(gzip.compress(b"0" * 100_000), "gzip", 10_000)
    for data, encoding in ((body, "gzip"), (gzip.compress(body)[:-12], "gzip"), (body, "br")):
        with pytest.raises(BadRequest):
            decompress(data, encoding, 10_000)
