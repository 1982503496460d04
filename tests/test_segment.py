"""serve/segment.py step by step: pieces grouped into digits, marks left out, touching digits
split, reading order over several lines."""
import numpy as np

from serve.segment import (cut_into, cut_path, favoured, group, merge, neck, pieces, segment, spur_columns, text_lines,
                           underline_rows)


def block(mask, x, y, w, h):
    mask[y : y + h, x : x + w] = True


def ring(mask, x, y, w, h, t=4):
    mask[y : y + h, x : x + w] = True
    mask[y + t : y + h - t, x + t : x + w - t] = False


def test_pieces_stacked_in_one_column_are_one_digit():
    mask = np.zeros((120, 120), bool)
    ring(mask, 30, 20, 40, 38)  # a broken "8": two loops that do not touch
    ring(mask, 28, 62, 44, 40)
    _, stats = pieces(mask)
    assert len(group(stats)) == 1


def test_a_lifted_bar_joins_its_digit():
    mask = np.zeros((120, 120), bool)
    block(mask, 40, 40, 6, 30)  # the "5"'s upright and belly
    ring(mask, 40, 60, 36, 40)
    block(mask, 46, 28, 34, 5)  # its bar, written apart
    found = segment(mask)
    assert len(found) == 1 and found[0].box[1] == 28


def test_a_long_flat_line_under_a_digit_is_not_part_of_it():
    """A paper line left in (too short to be found, where it leaves the picture) or a stroke under
    the number sits below a digit, overlapping it in x: it is not the digit's lifted bar."""
    mask = np.zeros((200, 400), bool)
    ring(mask, 250, 40, 40, 60)  # a "0"
    mask[120:124, 10:390] = True  # the line, 20 px under it
    _, stats = pieces(mask)
    assert sorted(b for b, _ in group(stats)) == [(10, 120, 380, 4), (250, 40, 40, 60)]
    assert [s.box for s in segment(mask)] == [(250, 40, 40, 60)]


def test_a_mark_just_above_or_below_a_digit_is_not_part_of_it():
    """A tick under a digit, a star over it: small pieces a clear gap away (here a quarter and a
    third of its height) are marks beside it, not strokes of it, whether they hold a fragment's
    ink (the tick) or more (the star)."""
    mask = np.zeros((200, 200), bool)
    ring(mask, 80, 70, 40, 60)  # a "0", 736 px of ink
    block(mask, 90, 153, 12, 3)  # a tick, 16 px under it: a fragment's ink (66 px)
    block(mask, 99, 146, 3, 10)
    block(mask, 93, 37, 14, 14)  # a filled star, 19 px over it: more than a fragment (196 px)
    _, stats = pieces(mask)
    assert (80, 70, 40, 60) in [b for b, _ in group(stats)]
    assert [s.box for s in segment(mask)] == [(80, 70, 40, 60)]


def test_a_dash_drawn_into_a_digit_is_read_without_it_and_with_it():
    """A dash or a line that runs into a digit's stroke at mid-height is one piece of ink with it:
    the favoured reading leaves it out, the reading with it is offered too (the model chooses)."""
    mask = np.zeros((120, 200), bool)
    ring(mask, 100, 20, 40, 60, t=6)  # a "0"
    mask[48:52, 40:103] = True  # a dash from the left, into its stroke
    assert spur_columns(mask[20:80, 40:140]) == (60, 0)
    for alternatives in (True, False):  # /read and /predict
        found = segment(mask, alternatives)
        assert sorted((s.choice, s.option, s.box) for s in found) == [(0, 0, (100, 20, 40, 60)), (0, 1, (40, 20, 100, 60))]
    mask[48:52, 137:190] = True  # and another into its right side
    assert sorted((s.option, s.box) for s in segment(mask)) == [(0, (100, 20, 40, 60)), (1, (40, 20, 150, 60))]


def test_a_line_drawn_under_a_digit_and_touching_its_foot_is_read_without_it_and_with_it():
    """An underline that meets a digit's foot is one piece of ink with it: the reading without its
    rows is offered beside the whole (the model chooses; the whole stays favoured, since a "2"
    with a long foot can look alike)."""
    mask = np.zeros((120, 200), bool)
    ring(mask, 60, 20, 40, 60, t=6)  # a "0", its foot on row 79
    mask[78:83, 60:150] = True  # a line under it from its left edge, reaching 50 px past its right side
    assert underline_rows(mask[20:83, 60:150]) == 5
    for alternatives in (True, False):  # /read and /predict
        found = segment(mask, alternatives)
        assert sorted((s.choice, s.option, s.box) for s in found) == [(0, 0, (60, 20, 90, 63)), (0, 1, (60, 20, 40, 58))]


def test_a_tilted_underline_is_cut_away_under_the_digit_too():
    """A photo tilts the line: under the digit it lies higher (or lower) than where it reaches out,
    and the reading without it must leave all of it out, not a sliver under the digit's foot."""
    mask = np.zeros((120, 200), bool)
    ring(mask, 60, 20, 40, 60, t=6)  # a "0", its foot on rows 74-79
    for c in range(60, 150):  # a line 4 px thick from row 79 under its left edge, falling 4 px over 90 columns
        r = 79 + (4 * (c - 60)) // 90
        mask[r:r + 4, c] = True
    for ring_x, line_x, ink in ((60, 60, mask), (100, 50, mask[:, ::-1])):  # and mirrored: reaching out to the left
        readings = sorted((s.option, s.box) for s in segment(np.ascontiguousarray(ink)))
        assert [option for option, _ in readings] == [0, 1] and readings[0][1] == (line_x, 20, 90, 66)
        x, y, w, h = readings[1][1]
        assert (x, y, w) == (ring_x, 20, 40) and 74 < y + h <= 79  # the ring's foot kept, the line's top row (79) not


def test_an_underline_out_at_both_sides_or_under_a_curling_tail_is_found():
    """A line under the whole digit reaching out a little at both sides (0.25 of the height each),
    and one under a tail that curls down over it (two runs of ink in the columns next to the digit)."""
    mask = np.zeros((120, 200), bool)
    ring(mask, 60, 20, 40, 60, t=6)  # a "0", its foot on rows 74-79
    mask[78:82, 44:116] = True  # out 16 px (0.25 of the 62-row group) at each side
    assert underline_rows(mask[20:82, 44:116]) == 4
    nine = np.zeros((120, 200), bool)
    ring(nine, 60, 10, 40, 40, t=6)  # a "9": its head,
    nine[10:76, 94:100] = True  # its stem,
    nine[70:76, 100:112] = True  # its tail curling right, then down towards the line
    nine[76:78, 110:112] = True
    nine[80:84, 96:190] = True  # a line from under the stem, reaching far right; the stem's foot touches it
    nine[76:80, 94:100] = True
    assert underline_rows(nine[10:84, 60:190]) == 4


def test_a_digits_own_bars_are_not_taken_for_marks():
    """A "7"'s bar at its top, a "2"'s foot, a short cross-bar: part of the digit, one reading."""
    seven = np.zeros((80, 60), bool)
    seven[0:6, 0:60] = True
    seven[0:80, 50:56] = True
    two = np.zeros((80, 70), bool)
    ring(two, 0, 0, 36, 40, t=6)
    two[30:80, 30:36] = True
    two[74:80, 30:70] = True
    four = np.zeros((80, 60), bool)
    four[0:50, 0:6] = True
    four[44:50, 0:60] = True
    four[0:80, 36:42] = True  # its bar sticks out 18 px right of the upright, less than 0.3 of its height
    one = np.zeros((80, 40), bool)
    one[0:80, 17:23] = True
    one[74:80, 4:36] = True  # a base 13 px each side of the upright
    for digit in (seven, two, four, one):
        assert spur_columns(digit) == (0, 0)
        assert underline_rows(digit) == 0
        assert len(segment(digit)) == 1


def test_specks_dots_and_dashes_are_not_digits():
    mask = np.zeros((150, 300), bool)
    ring(mask, 100, 30, 50, 80)  # a "0"
    block(mask, 200, 60, 5, 5)  # a dot
    block(mask, 20, 70, 40, 5)  # a dash
    block(mask, 250, 20, 1, 1)  # a speck
    found = segment(mask)
    assert [s.box for s in found] == [(100, 30, 50, 80)]


def test_touching_digits_are_cut_at_the_thinnest_ink():
    mask = np.zeros((100, 200), bool)
    ring(mask, 20, 10, 60, 80)
    ring(mask, 90, 10, 60, 80)
    block(mask, 78, 48, 14, 4)  # where they touch
    group = mask[10:90, 20:150]
    parts, crossed = cut_into(group, 2)
    assert len(parts) == 2 and crossed <= neck(group), "a thin neck"
    left = np.flatnonzero(parts[0].any(0))
    assert 58 <= left[-1] <= 70 and parts[1][:, :58].sum() == 0, "cut in the touching block"
    assert (parts[0] | parts[1]).sum() == mask.sum() and not (parts[0] & parts[1]).any()
    found = segment(mask)
    a, b = [s.box for s in favoured(found)]
    assert a[0] == 20 and 78 <= a[0] + a[2] <= 92 and b[0] + b[2] == 150, "cut in the touching block"
    # The model is still asked about the other readings: the pair as one wide digit among them.
    assert {s.choice for s in found} == {0} and (20, 10, 130, 80) in [s.box for s in found if s.option > 0]
    # /predict searches no other cut. The pair, the only ink on the picture, keeps its whole
    # reading beside the favoured cut: one wide digit or two that touch is the model's call.
    alone = segment(mask, alternatives=False)
    assert [s.box for s in favoured(alone)] == [a, b] and [s.box for s in alone if s.option > 0] == [(20, 10, 130, 80)]
    # With other ink beside it, the favoured cut alone.
    ring(mask, 160, 10, 36, 80)
    beside = segment(mask, alternatives=False)
    assert [s.box for s in beside] == [a, b, (160, 10, 36, 80)] and {s.choice for s in beside} == {-1}


def test_overlapping_touching_digits_are_cut_along_a_bent_path():
    """Two slanted strokes joined by a short bar: their columns overlap, so every straight cut
    crosses both strokes; a path that leans with them crosses only the bar."""
    import cv2

    img = np.zeros((100, 120), np.uint8)
    cv2.line(img, (10, 90), (50, 10), 1, 5)
    cv2.line(img, (50, 90), (90, 10), 1, 5)
    cv2.line(img, (30, 50), (70, 50), 1, 3)  # where they touch
    rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
    mask = img.astype(bool)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # the group's box
    x0, y0 = cols[0], rows[0]
    parts, _ = cut_into(mask, 2)
    assert len(parts) == 2
    a, b = parts
    at = lambda m, ys, xs: m[max(0, ys[0] - y0) : ys[1] - y0, max(0, xs[0] - x0) : xs[1] - x0].sum()  # noqa: E731
    assert at(a, (0, 100), (0, 40)) > 0.95 * at(mask, (0, 100), (0, 40))
    assert at(b, (0, 100), (60, 120)) > 0.95 * at(mask, (0, 100), (60, 120))
    # Each stroke whole: the first one's top (near x=50) stays with it, the second's foot too.
    assert at(a, (8, 20), (40, 56)) == at(mask, (8, 20), (40, 56))
    assert at(b, (80, 95), (44, 60)) == at(mask, (80, 95), (44, 60))


def test_one_wide_digit_is_not_cut():
    mask = np.zeros((100, 200), bool)
    ring(mask, 20, 20, 150, 60, t=5)  # a flat "0": wide, but no thin neck anywhere
    group = mask[20:80, 20:170]
    assert min(cut_into(group, k)[1] for k in (2, 3)) > neck(group), "every cut crosses two strokes"
    found = segment(mask)
    assert [s.box for s in favoured(found)] == [(20, 20, 150, 60)], "whole is what the shapes favour"
    cuts = [s for s in found if s.option > 0]
    assert cuts and all(s.box[3] >= 0.6 * 60 for s in cuts), "cut readings are offered, no sliver among them"


def test_a_digit_no_wider_than_tall_has_one_reading():
    mask = np.zeros((120, 120), bool)
    ring(mask, 30, 20, 50, 70)
    found = segment(mask)
    assert [(s.box, s.choice) for s in found] == [((30, 20, 50, 70), -1)]


def test_reading_order_is_lines_top_to_bottom_then_left_to_right():
    boxes = [(200, 110, 40, 60), (20, 10, 40, 60), (120, 14, 40, 60), (20, 118, 40, 55), (220, 5, 40, 60)]
    assert text_lines(boxes) == [[1, 2, 4], [3, 0]]


def test_segments_carry_their_line_and_merge_into_one():
    mask = np.zeros((200, 200), bool)
    ring(mask, 20, 10, 40, 60)
    ring(mask, 100, 10, 40, 60)
    ring(mask, 60, 110, 40, 60)
    found = segment(mask)
    assert [(s.line, s.box[0]) for s in found] == [(0, 20), (0, 100), (1, 60)]
    one = merge(found)
    assert one.box == (20, 10, 120, 160) and one.mask.sum() == sum(s.mask.sum() for s in found)


def test_a_leftover_paper_line_does_not_hide_the_digits_beside_it():
    """A thin upright across the picture (a margin line that line removal missed) is no digit,
    and does not make the digits beside it look like marks."""
    mask = np.zeros((300, 200), bool)
    block(mask, 10, 0, 3, 300)  # the line
    ring(mask, 60, 120, 30, 50)  # a "0"
    block(mask, 120, 120, 6, 50)  # a "1": thin too, but as tall as the digit beside it
    found = segment(mask)
    assert [s.box for s in found] == [(60, 120, 30, 50), (120, 120, 6, 50)]


def test_cut_path_goes_round_ink_and_prefers_the_expected_column():
    mask = np.zeros((30, 20), bool)
    mask[:15, 8:12] = True  # a stroke down the middle, top half only
    path, crossed = cut_path(mask, centre=10)
    assert crossed == 0 and not mask[np.arange(30), path].any(), "round the stroke, not through it"
    assert (np.abs(np.diff(path)) <= 1).all(), "a pixel sideways per row at most"
    empty = np.zeros((10, 20), bool)
    assert (cut_path(empty, centre=13)[0] == 13).all()
