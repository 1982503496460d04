"""Pull the uploaded image bytes out of a request: multipart, raw image body, or JSON base64."""
from __future__ import annotations

import base64
import binascii
import json
import re

from flask import Request

from serve.errors import BadRequest, TooLarge, UnsupportedType
from serve.preprocess import MEDIA_TYPES

_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,", re.IGNORECASE)


def read_images(request: Request) -> tuple[list[bytes], bool]:
    """Return (images, is_batch). Declared file types are ignored: the bytes are sniffed later; how
    many images a request may hold is the classification core's limit (serve/classifier.py)."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        one, many = request.files.getlist("image"), request.files.getlist("images")
        if len(one) > 1:
            raise BadRequest("field 'image' takes one file; send several as 'images'")
        if not one and not many:
            names = sorted({str(n) for n in (*request.files, *request.form)})  # a part may have no name
            raise BadRequest(f"no file in field 'image' or 'images' (got: {', '.join(names) or 'nothing'})")
        images, batch = [f.read() for f in one + many], bool(many)
    elif mimetype == "application/json":
        images, batch = _from_json(_parse_json(read_body(request)))
    elif mimetype.startswith("image/"):
        if mimetype not in MEDIA_TYPES.values():
            raise UnsupportedType(f"unsupported image type {mimetype}: allowed are {', '.join(MEDIA_TYPES.values())}")
        images, batch = [read_body(request)], False
    elif not mimetype:
        raise BadRequest("no Content-Type: send multipart/form-data, an image/* body, or application/json")
    else:
        raise UnsupportedType(f"unsupported Content-Type {mimetype}: send multipart/form-data, image/png, image/jpeg or application/json")
    return images, batch


def read_body(request: Request) -> bytes:
    """The whole body, refused with 413 past MAX_CONTENT_LENGTH whether or not it has a Content-Length.

    Werkzeug refuses a Content-Length over the limit, but silently cuts a chunked body (no
    Content-Length) at the limit, and the cut body would then be decoded as if whole. A chunked
    body is read here from the server's terminated stream, one byte past the limit at most.
    """
    limit = request.max_content_length
    if limit is None or request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)
    stream, body = request.environ["wsgi.input"], bytearray()
    while len(body) <= limit:
        chunk = stream.read(min(1 << 16, limit + 1 - len(body)))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise TooLarge(f"request body over {limit} bytes")
    return bytes(body)


def _parse_json(raw: bytes):
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        return None


def _from_json(body) -> tuple[list[bytes], bool]:
    if not isinstance(body, dict):
        raise BadRequest('body must be a JSON object: {"image": "<base64>"} or {"images": ["<base64>", ...]}')
    if "image" in body:
        return [b64_image(body["image"], "image")], False
    if "images" in body:
        items = body["images"]
        if not isinstance(items, list) or not items:
            raise BadRequest("'images' must be a non-empty list of base64 strings")
        return [b64_image(item, f"images[{i}]") for i, item in enumerate(items)], True
    raise BadRequest(f"JSON body has no 'image' or 'images' key (got: {', '.join(map(str, body)) or 'nothing'})")


def b64_image(value, where: str) -> bytes:
    """An image file sent in JSON: base64, or a data: URL (canvas.toDataURL()); /predict, /read and /v2."""
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a base64 string")
    try:
        return base64.b64decode(_DATA_URL.sub("", value.strip()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where} is not valid base64") from None
