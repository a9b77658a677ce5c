"""The demo's drawing: text size follows the frame, labels stay inside it and apart, masks are
outlined, small videos are drawn enlarged."""

import itertools

import numpy as np
import pytest

from tests.tools.tool_loading import load_tool

demo = load_tool("demo.py")


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_text_grows_with_the_frame_and_small_videos_are_enlarged():
    small, large = demo.label_style(96, 128), demo.label_style(1080, 1920)
    assert small["scale"] < large["scale"] and small["outline"] <= large["outline"]
    assert demo.render_zoom(96, 128, 360) == 4 and demo.render_zoom(48, 64, 360) == 8
    assert demo.render_zoom(720, 1280, 360) == 1 and demo.render_zoom(96, 128, 0) == 1
    frame, [mask] = demo.zoom_frame(np.zeros((2, 3, 3), np.uint8), [np.eye(2, 3, dtype=bool)], 4)
    assert frame.shape == (8, 12, 3) and mask.shape == (8, 12) and mask[:4, :4].all()


@pytest.mark.parametrize("height,width", [(360, 480), (720, 1280)])
def test_labels_are_inside_the_frame_and_apart(height, width):
    taken = []
    # six masks whose corners are all near the top-left or the right edge: labels must move
    anchors = [(0, 0), (5, 3), (10, 6), (width - 20, 0), (width - 5, height - 5), (2, 2)]
    for x, y in anchors:
        box = demo.place_label(150, 20, x, y, y + 40, height, width, taken)
        placed = (box[0], box[1], box[0] + 150, box[1] + 20)
        assert 0 <= placed[0] and placed[2] <= width and 0 <= placed[1] and placed[3] <= height
        taken.append(placed)
    assert not any(_overlap(a, b) for a, b in itertools.combinations(taken, 2))


def test_a_label_wider_than_the_frame_is_shortened_to_fit():
    style = demo.label_style(360, 120)
    text, (w, _), _ = demo.fit_label("#12 earless_seal 0.93", 100, style)
    assert w <= 100 and text.startswith("#12 ")


def test_masks_are_outlined_and_labelled_within_the_frame():
    frame = np.zeros((360, 480, 3), np.uint8)
    frame[:] = demo.track_color(3).astype(np.uint8)  # background of the track's own colour
    mask = np.zeros((360, 480), bool)
    mask[100:200, 300:479] = True  # touching the right edge
    out = demo.draw_tracks(frame, [mask], [3], ["#3 a_rather_long_class_name 0.87"])
    # a dark outline separates a mask from a background of its own colour
    assert out[150, 300 - 2 : 300 + 1].min() < 60
    assert np.abs(out.astype(int) - frame.astype(int)).sum() > 0
