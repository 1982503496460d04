"""The API's errors: one JSON shape, {"error": {"code", "message"}}, each with its HTTP status."""
from __future__ import annotations


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict:
        return {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class BadImage(ApiError):
    status, code = 400, "bad_image"


class TooLarge(ApiError):
    status, code = 413, "too_large"


class UnsupportedType(ApiError):
    status, code = 415, "unsupported_media_type"


class NoDigit(ApiError):
    status, code = 422, "no_digit"


class NotReady(ApiError):
    status, code = 503, "not_ready"


class Overloaded(ApiError):
    """Shed load: more images wait for inference than the queue holds. Retry-After says when to retry."""
    status, code = 503, "overloaded"
    retry_after_s = 1

    def headers(self) -> dict:
        return {"Retry-After": str(self.retry_after_s)}


class SeveralDigits(ApiError):
    status, code = 422, "several_digits"


class TooManyDigits(ApiError):
    status, code = 422, "too_many_digits"
