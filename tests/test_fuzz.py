"""Property-based fuzzing, derandomized so that CI sees the same examples every run.

1. decode + preprocess on arbitrary bytes and on mutated real PNG/JPEG files: the only exceptions
   that may come out are the API's documented ones (BadImage, NoDigit, SeveralDigits, TooLarge, UnsupportedType).
2. Valid pictures of any size, shape and content: a 28x28 input, NoDigit or SeveralDigits, nothing else.
3. Schemathesis drives every operation in /openapi.json: no 5xx, and every response conforms to it.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.extra.numpy import arrays
from PIL import Image

from serve.errors import ApiError, BadImage, NoDigit, SeveralDigits, TooLarge, UnsupportedType
from serve.preprocess import MAGIC, Limits, Spec, prepare, prepare_gray
from tests import hostile
from train.mnist import MEAN, STD

SPEC = Spec(mean=MEAN, std=STD)
# A lower pixel limit than the server's keeps each example fast (a mutated header can claim a big
# image); the limit's own behaviour is tested with the real one in test_hostile_inputs.py.
LIMITS = Limits(max_pixels=2_000_000)
DOCUMENTED = (BadImage, NoDigit, SeveralDigits, TooLarge, UnsupportedType)
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _seeds() -> list[bytes]:
    """Real files of every flavour the decoders handle, to mutate."""
    d = hostile.digit(48)
    rgba = Image.new("RGBA", d.size, (0, 0, 0, 0))
    rgba.putalpha(d.point(lambda v: 255 - v))
    p = d.convert("P")
    p.info["transparency"] = 255
    out = [
        hostile.save(d, "PNG"), hostile.save(d.convert("1"), "PNG"), hostile.save(d.convert("RGB"), "PNG"),
        hostile.save(rgba, "PNG"), hostile.save(d.convert("LA"), "PNG"), hostile.save(p, "PNG", transparency=255),
        hostile.save(d.convert("I;16"), "PNG"), hostile.save(d, "PNG", optimize=True),
        hostile.save(d, "JPEG", quality=80), hostile.save(d.convert("RGB"), "JPEG", progressive=True),
        hostile.save(d.convert("CMYK"), "JPEG"), hostile.save(d.convert("RGB"), "JPEG", subsampling=2),
        hostile.jpeg_with_size(3000, 3000), hostile.png_header_bomb(2000, 2000),
    ]
    exif = Image.Exif()
    exif[0x0112] = 8
    out.append(hostile.save(d.convert("RGB"), "JPEG", exif=exif.tobytes()))
    return out


SEEDS = _seeds()


@st.composite
def mutated(draw) -> bytes:
    """A real file, then a few of: byte flips, a cut, an insertion, a duplicated slice."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "repeat"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif op == "cut":
            del data[draw(st.integers(0, len(data))):]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=32))
        else:
            j = draw(st.integers(i, min(len(data), i + 64)))
            data[i:i] = data[i:j] * draw(st.integers(1, 4))
    return bytes(data)


UPLOADS = st.one_of(
    st.binary(max_size=512),
    st.binary(max_size=512).map(lambda b: MAGIC["PNG"] + b),
    st.binary(max_size=512).map(lambda b: MAGIC["JPEG"] + b),
    mutated(),
)


@settings(FUZZ, max_examples=600)
@given(UPLOADS)
def test_decode_and_preprocess_raise_only_documented_errors(data):
    try:
        out = prepare(data, SPEC, LIMITS)
    except DOCUMENTED as e:
        assert isinstance(e, ApiError) and e.message
        event(type(e).__name__)
        return
    event("prepared")
    assert out.tensor.shape == (1, 28, 28) and out.tensor.dtype == np.float32
    assert np.isfinite(out.tensor).all()
    assert out.image.shape == (28, 28) and out.image.dtype == np.uint8


@settings(FUZZ, max_examples=250)
@given(arrays(np.uint8, st.tuples(st.integers(1, 300), st.integers(1, 300)),
              elements=st.sampled_from([0, 1, 30, 127, 128, 200, 254, 255])))
def test_any_grayscale_picture_gives_an_input_or_no_digit(gray):
    try:
        out = prepare_gray(gray, SPEC)
    except (NoDigit, SeveralDigits):  # noise is no digit, or specks side by side: never an input made up
        return
    assert out.image.shape == (28, 28) and np.isfinite(out.tensor).all()


@settings(FUZZ, max_examples=60)
@given(st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "CMYK"]),
       st.integers(1, 120), st.integers(1, 120), st.sampled_from(["PNG", "JPEG"]), st.integers(0, 2**32 - 1))
def test_encoded_pictures_of_any_mode_and_shape(mode, w, h, fmt, seed):
    if mode not in {"PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"), "JPEG": ("L", "RGB", "CMYK")}[fmt]:
        mode = "RGB"
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).convert(mode)
    try:
        out = prepare(hostile.save(img, fmt), SPEC, LIMITS)
    except (NoDigit, SeveralDigits, TooLarge):
        return
    assert out.image.shape == (28, 28)


# --- schemathesis: the OpenAPI document against the app itself ------------------------------------
# (The Python API, not schemathesis' pytest plugin: its lazy fixture loader does not run on pytest 9.)

def test_every_operation_conforms_to_the_openapi_document(app):
    from collections import Counter

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    # A schema-valid upload is any base64 string or any bytes: most are not a PNG or JPEG of a digit.
    # Their documented refusals count as acceptance; anything undocumented still fails the run.
    schema.config.checks.positive_data_acceptance.expected_statuses = ["2XX", "400", "413", "415", "422"]
    # Too many images violate the schema's maxItems, and their documented refusal is 413, not 400;
    # a /v2 model name or version other than the served one is refused with the protocol's 404.
    schema.config.checks.negative_data_rejection.expected_statuses = ["400", "404", "413", "415", "422"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"POST /predict", "GET /healthz", "GET /readyz", "GET /v1/models", "GET /metrics"} <= {op.label for op in operations}
    answers = Counter()
    for op in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @settings(FUZZ, max_examples=50, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def conforms(case):
                # Default checks: no 5xx, documented status codes, content types, headers and schemas.
                answers[(op.label, case.call_and_validate().status_code)] += 1

            try:
                conforms()
            except Unsatisfiable:  # nothing to make invalid in an operation without parameters
                assert mode == schemathesis.GenerationMode.NEGATIVE and op.label != "POST /predict"
    # Random bytes are never a digit: the success responses are checked on real uploads, in every media type.
    import base64

    predict = next(op for op in operations if op.label == "POST /predict")
    png = hostile.save(hostile.digit(), "PNG")
    jpg = hostile.save(hostile.digit(), "JPEG")
    for body, media_type, query in [
        ({"image": base64.b64encode(png).decode()}, "application/json", {}),
        ({"images": [base64.b64encode(jpg).decode()] * 2}, "application/json", {"debug": "1"}),
        (png, "image/png", {"debug": "true"}),
        (jpg, "image/jpeg", {}),
        ({"image": png}, "multipart/form-data", {}),
        ({"images": [png, jpg]}, "multipart/form-data", {"debug": "0"}),
    ]:
        case = predict.Case(body=body, media_type=media_type, query=query)
        answers[(predict.label, case.call_and_validate().status_code)] += 1
    print("schemathesis answers:", dict(sorted(answers.items())))
    assert not any(status >= 500 for _, status in answers)
    assert answers[("POST /predict", 200)] == 6
