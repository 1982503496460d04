"""The API's faults, each with its one HTTP status, whatever the protocol: the only place a fault
gets a status. /predict and /read write an error as {"error": {"code", "message"}}, /v2 as the
protocol's {"error": "<message>"}; the status is the same on every route.

The README's error table is this module's output (`python -m serve.errors`; a test compares them).
A fault about one image of several carries its index, and its message says which image it was.
"""
from __future__ import annotations

import logging
import re
from typing import Callable

from flask import g
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    status = 400
    code = "bad_request"
    when = ""  # the README's description of the fault

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.message = message
        self.index = index  # which image of the request, for a fault about one

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict:
        return {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"
    when = ("no file field, two files in `image`, JSON that is not the documented shape, invalid base64, no "
            "Content-Type; on `/v2`: a malformed inference request (input name, datatype, shape), non-finite values")


class BadImage(ApiError):
    status, code = 400, "bad_image"
    when = "a PNG/JPEG that cannot be decoded (truncated, corrupt)"


class NotFound(ApiError):
    status, code = 404, "not_found"
    when = "no such path; on `/v2`: a model name or version this server does not serve"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"
    when = "a method the path does not take (the `Allow` header lists those it does)"
    allow: tuple[str, ...] = ()

    def headers(self) -> dict:
        return {"Allow": ", ".join(sorted(self.allow))} if self.allow else {}


class TooLarge(ApiError):
    status, code = 413, "too_large"
    when = ("body over `MAX_UPLOAD_BYTES` (also after decompression), image over `MAX_PIXELS`, more than "
            "`MAX_BATCH` images or `MAX_FORM_PARTS` parts")


class UnsupportedType(ApiError):
    status, code = 415, "unsupported_media_type"
    when = "anything but PNG/JPEG, by content (also an `image_bytes` element on `/v2`)"


class NoDigit(ApiError):
    status, code = 422, "no_digit"
    when = "a blank or inkless picture, or one covered in texture"


class SeveralDigits(ApiError):
    status, code = 422, "several_digits"
    when = "a single-digit request (`/predict`, `/v2`) with a picture of several digits side by side: send it to `/read`"

    @classmethod
    def holding(cls, n: int) -> "SeveralDigits":
        return cls(f"the picture holds {n} digits; /predict reads one: send pictures of numbers to POST /read")


class TooManyDigits(ApiError):
    status, code = 422, "too_many_digits"
    when = "`/read` on a picture of more than `MAX_DIGITS` digits"


class Internal(ApiError):
    status, code = 500, "internal"
    when = "a fault of the server itself, logged with the request id; nothing a client sends causes it"


class NotReady(ApiError):
    status, code = 503, "not_ready"
    when = ("no model version is loaded (see `/readyz`: every version present, and why each was refused); a "
            "refused *new* version never causes it while an older one serves")


class Overloaded(ApiError):
    """Shed load: more images wait for inference than the queue holds. Retry-After says when to retry."""
    status, code = 503, "overloaded"
    when = "more than `MAX_QUEUE_IMAGES` images wait for inference; `Retry-After: 1`"
    retry_after_s = 1

    def headers(self) -> dict:
        return {"Retry-After": str(self.retry_after_s)}


FAULTS = (BadRequest, BadImage, NotFound, MethodNotAllowed, TooLarge, UnsupportedType, NoDigit, SeveralDigits,
          TooManyDigits, Internal, NotReady, Overloaded)
_BY_STATUS = {404: NotFound, 405: MethodNotAllowed, 413: TooLarge, 415: UnsupportedType}


def from_http(e: HTTPException) -> ApiError:
    """What the web framework refused itself (unknown path, wrong method, body or form over its limit)
    as the same fault the app raises, so both protocols answer it like any other."""
    fault = _BY_STATUS.get(e.code)
    if fault is None:  # a status of HTTP's own that no fault above has (411, 416, 431, ...): kept as it is
        out = ApiError(e.description or e.name)
        out.status, out.code = e.code or 500, re.sub(r"[^a-z]+", "_", (e.name or "error").lower()).strip("_")
        return out
    out = fault(e.description or e.name)
    if isinstance(out, MethodNotAllowed):
        out.allow = tuple(getattr(e, "valid_methods", None) or ())
    return out


def at(e: ApiError, index: int, name: str | None) -> ApiError:
    """The fault `e` of image `index`, its message naming the image as the protocol calls it
    ("images[2]", "input 'image_bytes'[2]"); `name` None: a single image, named by nothing."""
    e.index = index
    if name is not None:
        e.message = f"{name}[{index}]: {e.message}"
    return e


def install_handlers(target, body: Callable[["ApiError"], dict]) -> Callable:
    """One error handler per protocol shape, on a Flask app or blueprint: a fault the app raised,
    what the framework refused itself and anything unexpected (logged, then a 500) all answer as
    `body(fault)` with the fault's status and headers. Returns the function that writes a fault as
    a response, for a fault found outside a handler."""

    def answer(e: ApiError):
        return body(e), e.status, e.headers()

    def unexpected(e: Exception):
        logging.getLogger("serve").exception("unhandled error", extra={"request_id": g.get("request_id")})
        return answer(Internal("internal server error"))

    target.register_error_handler(ApiError, answer)
    target.register_error_handler(HTTPException, lambda e: answer(from_http(e)))
    target.register_error_handler(Exception, unexpected)
    return answer


def markdown_table() -> str:
    """The README's error table."""
    rows = ["| status | code | when |", "|---|---|---|"]
    rows += [f"| {f.status} | `{f.code}` | {f.when} |" for f in FAULTS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
