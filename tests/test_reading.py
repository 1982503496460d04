"""serve/reading.py: which reading of ambiguous ink is kept, and the /read answer built from it."""
import numpy as np
import pytest

from serve.errors import NoDigit, SeveralDigits
from serve.preprocess import Digit
from serve.reading import choose, one_digit, one_digit_each, reading


def digit(choice=-1, option=0, x=0, line=0):
    return Digit(tensor=np.zeros((1, 28, 28), np.float32), image=np.zeros((28, 28), np.uint8),
                 box=(x, 0, 10, 20), line=line, choice=choice, option=option)


def probs(*tops):
    """Rows whose most probable digit has the given probability (the rest spread thin)."""
    rows = []
    for i, p in enumerate(tops):
        row = np.full(10, (1 - p) / 10, np.float32)
        row[i % 10] = p
        rows.append(row)
    return np.stack(rows)


def test_the_reading_the_model_is_surer_of_wins_whichever_the_shapes_favour():
    # A group read whole (option 0) or as two digits (option 1); a plain digit before it.
    found = [digit(), digit(0, 0, 10), digit(0, 1, 10), digit(0, 1, 20)]
    # Two confident digits beat one doubtful wide one ...
    assert choose(found, probs(0.99, 0.55, 0.98, 0.97)) == [0, 2, 3]
    # ... and a confident whole beats two parts that are each less sure than it.
    assert choose(found, probs(0.99, 0.97, 0.9, 0.95)) == [0, 1]


def test_a_one_digit_picture_is_the_reading_the_model_believes_or_several():
    assert one_digit([digit()], probs(0.6)) == 0  # one digit: whatever the model thinks of it
    # Lone ink cut as two touching digits (option 0) or read whole, as one wide digit (option 1).
    found = [digit(0, 0), digit(0, 0, 10), digit(0, 1)]
    assert one_digit(found, probs(0.7, 0.6, 0.98)) == 2
    with pytest.raises(SeveralDigits, match="holds 2 digits.*/read"):
        one_digit(found, probs(0.99, 0.98, 0.5))


def test_each_picture_is_read_from_its_own_rows_of_one_inference():
    """one_digit_each: the classifier's walk over a request's pictures, one inference for all."""
    calls = []

    def infer(batch):
        calls.append(len(batch))
        return probs(0.6, 0.7, 0.6, 0.98, 0.99, 0.98, 0.5)[: len(batch)]

    refused = NoDigit("no digit")
    lone, wide = [digit()], [digit(0, 0), digit(0, 0, 10), digit(0, 1)]
    out = one_digit_each([lone, wide, refused, wide], infer)
    assert calls == [7]  # every candidate of every picture at once; none for the refused picture
    assert out[0][1] is lone[0] and out[0][0][0] == pytest.approx(0.6)
    assert out[1][1] is wide[2] and out[1][0].max() == pytest.approx(0.98)  # read whole (rows 1-3)
    assert out[2] is refused
    assert isinstance(out[3], SeveralDigits)  # rows 4-6: the cut is surer, so it holds 2 digits
    assert one_digit_each([refused], infer) == [refused] and calls == [7]  # nothing to infer


def test_a_part_taken_for_not_a_digit_sinks_its_reading():
    """Calibrated rows sum to 1 - P(not a digit): a fragment the model rejects scores low."""
    found = [digit(0, 0), digit(0, 0, 10), digit(0, 1)]
    rows = probs(0.98, 0.97, 0.9)
    rows[1] *= 0.05 / rows[1].sum()  # the second part: 95% "not a digit"
    assert choose(found, rows) == [2]


def test_a_tie_keeps_the_favoured_reading_and_groups_are_chosen_apart():
    found = [digit(0, 0), digit(0, 1), digit(1, 0, 30), digit(1, 1, 30), digit(1, 1, 40)]
    assert choose(found, probs(0.9, 0.9, 0.5, 0.9, 0.9)) == [0, 3, 4]


def test_the_answer_has_one_text_line_per_line_of_digits():
    found = [digit(x=0), digit(x=20), digit(x=0, line=1)]
    described = [{"digit": 4, "uncertain": False, "model": {}}, {"digit": None, "uncertain": True, "model": {}},
                 {"digit": 2, "uncertain": False, "model": {}}]
    out = reading(described, found, {"name": "m", "version": 1})
    assert out["text"] == "4?\n2" and out["uncertain"] is True
    assert [d["box"] for d in out["digits"]] == [[0, 0, 10, 20], [20, 0, 10, 20], [0, 0, 10, 20]]
