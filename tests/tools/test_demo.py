"""tools/demo.py and vis_zoo.utils.video_io: lazy frame reading, clear errors, a video in -> an
annotated
video out (with frames, per-track mask PNGs and a submission-format results.json)."""

import glob
import json
import os

import cv2
import numpy as np
import pytest
import torch

from vis_zoo.utils.video_io import FrameFolderFrames, MappedFrames, VideoReadError, open_frames
from tests.tools.tool_loading import load_tool

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_tool():
    return load_tool("demo.py")


def _parse_cpu_demo_args(demo, video, config, out, *options, config_opts=()):
    """The demo's arguments for `video` -> folder `out` with random weights, no progress bar and
    the model on CPU; `options` are more demo options, `config_opts` more config overrides."""
    return demo.parse_args(
        [
            "--input",
            video,
            "--config-file",
            config,
            "--output",
            str(out),
            *options,
            "--no-progress",
            "--allow-random-weights",
            "--opts",
            "MODEL.DEVICE",
            "cpu",
            *config_opts,
        ]
    )


def _write_video(path, num_frames=7, height=64, width=96):
    """Frame t: flat grey level 30*t with a white square moving right (so frames differ clearly)."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    assert writer.isOpened()
    for t in range(num_frames):
        frame = np.full((height, width, 3), 30 * t, np.uint8)
        frame[20:40, 5 + 8 * t : 25 + 8 * t] = 255
        writer.write(frame)
    writer.release()


def test_video_file_is_read_lazily_in_any_order(tmp_path):
    path = str(tmp_path / "clip.mp4")
    _write_video(path)
    frames = open_frames(path, cache_size=1)
    assert (len(frames), frames.height, frames.width) == (7, 64, 96)
    assert frames.fps == pytest.approx(10, abs=0.5)
    # the grey level identifies the frame (codec noise is a few levels)
    for t in (5, 6, 2, 0, 3):  # backwards beyond the 1-frame cache reopens the file
        assert abs(float(np.median(frames[t][50:, :, 0])) - 30 * t) < 8, t
        assert len(frames._cache) <= 1  # never more than the cache in memory
    assert len(frames[1:4]) == 3
    with pytest.raises(IndexError):
        frames[7]
    frames.close()
    assert len(open_frames(path, max_frames=3)) == 3


def test_frame_folder_natural_order_and_errors(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in (1, 2, 10):  # natural order: 2 before 10
        cv2.imwrite(str(folder / f"frame_{t}.png"), np.full((8, 12, 3), t * 20, np.uint8))
    (folder / "notes.txt").write_text("not a frame")
    frames = open_frames(str(folder))
    assert isinstance(frames, FrameFolderFrames) and len(frames) == 3
    assert [int(f[0, 0, 0]) for f in frames] == [20, 40, 200]

    (folder / "frame_11.png").write_bytes(b"broken")
    with pytest.raises(VideoReadError, match="frame_11.png"):
        open_frames(str(folder))[3]
    cv2.imwrite(str(folder / "frame_11.png"), np.zeros((9, 12, 3), np.uint8))
    with pytest.raises(VideoReadError, match="one size"):
        open_frames(str(folder))[3]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoReadError, match="no image files"):
        open_frames(str(empty))
    with pytest.raises(VideoReadError, match="does not exist"):
        open_frames(str(tmp_path / "missing.mp4"))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video")
    with pytest.raises(VideoReadError, match="garbage.mp4"):
        open_frames(str(garbage))


def test_mapped_frames_transforms_on_access_only():
    calls = []
    seen = []
    source = [np.full((2, 2, 3), i, np.uint8) for i in range(4)]
    mapped = MappedFrames(
        source,
        lambda f: calls.append(int(f[0, 0, 0])) or int(f[0, 0, 0]) * 10,
        on_first_read=seen.append,
    )
    assert calls == [] and len(mapped) == 4
    assert mapped[2] == 20 and mapped[-1] == 30 and mapped[1:3] == [10, 20]
    assert mapped[2] == 20
    assert calls == [2, 3, 1, 2, 2] and seen == [2, 3, 1]  # each first read reported once


# every method's small CPU config (a method added later is covered with no change here)
_SYNTHETIC_CONFIGS = sorted(glob.glob(os.path.join(_REPO, "configs", "*", "synthetic_R18.yaml")))


@pytest.mark.parametrize(
    "config",
    _SYNTHETIC_CONFIGS,
    ids=[os.path.basename(os.path.dirname(c)) for c in _SYNTHETIC_CONFIGS],
)
def test_demo_turns_a_video_into_an_annotated_video(tmp_path, config):
    demo = _load_tool()
    video = str(tmp_path / "walk.mp4")
    _write_video(video, num_frames=6)
    out = str(tmp_path / "out")
    torch.manual_seed(0)  # random weights: a fixed model
    # A random VisTR with the synthetic recipe's mask prior (p = 0.05) predicts no foreground pixel,
    # so
    # no track would be drawn: use the official init (p ~ 0.5) to get masks from random weights.
    method_opts = ["MODEL.VISTR.MASK_PRIOR_PROB", "0.0"] if "vistr" in config else []
    args = _parse_cpu_demo_args(
        demo,
        video,
        config,
        out,
        "--confidence-threshold",
        "0",
        "--max-tracks",
        "2",
        "--save-frames",
        "--save-masks",
        "--results-json",
        "--render-min-size",
        "0",
        config_opts=["MODEL.WEIGHTS", "", *method_opts],
    )
    summary = demo.run_demo(args)
    assert summary["num_frames"] == 6 and len(summary["drawn"]) == 2

    cap = cv2.VideoCapture(os.path.join(out, "walk.mp4"))
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (64, 96, 3)
        count += 1
    assert count == 6
    assert sorted(os.listdir(os.path.join(out, "frames"))) == [f"{t:05d}.jpg" for t in range(6)]

    # one folder per output track (drawn or not), one PNG per frame; the overlay changes exactly
    # where the drawn tracks' masks are
    mask_dirs = sorted(os.listdir(os.path.join(out, "masks")))
    assert len(mask_dirs) == summary["num_predictions"] == len(summary["tracks"])
    expected = [os.path.join("masks", d) for d in mask_dirs]
    assert sorted(t["masks"] for t in summary["tracks"]) == expected
    assert [t["id"] for t in summary["tracks"] if t["drawn"]] == summary["drawn"]
    source = open_frames(video)
    coloured = 0
    for d in mask_dirs:
        files = sorted(os.listdir(os.path.join(out, "masks", d)))
        assert files == [f"{t:05d}.png" for t in range(6)]
        if int(d.split("_")[1]) not in summary["drawn"]:
            continue
        for t, name in enumerate(files):
            mask = cv2.imread(os.path.join(out, "masks", d, name), cv2.IMREAD_GRAYSCALE) > 127
            if mask.sum() > 50:
                drawn = cv2.imread(os.path.join(out, "frames", f"{t:05d}.jpg")).astype(int)
                diff = np.abs(drawn - source[t].astype(int)).sum(-1)
                assert np.median(diff[mask]) > 20  # coloured where the mask is
                coloured += 1
    assert coloured > 0

    results = json.load(open(os.path.join(out, "results.json")))
    assert len(results) == summary["num_predictions"] > 0
    for r in results:
        assert set(r) == {"video_id", "category_id", "score", "segmentations"}
        assert len(r["segmentations"]) == 6 and 1 <= r["category_id"] <= 5  # synthetic dataset ids
        assert all(s is None or s["size"] == [64, 96] for s in r["segmentations"])


def test_demo_removes_the_partial_video_when_rendering_crashes(tmp_path, monkeypatch):
    demo = _load_tool()
    video = str(tmp_path / "walk.mp4")
    _write_video(video, num_frames=4)
    out = tmp_path / "out"
    real_draw = demo.draw_tracks
    calls = []

    def draw_then_crash(*args, **kwargs):  # the third frame fails, after two were written
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("renderer crashed")
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(demo, "draw_tracks", draw_then_crash)
    config = os.path.join(_REPO, "configs", "ifc", "synthetic_R18.yaml")
    args = _parse_cpu_demo_args(demo, video, config, out)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        demo.run_demo(args)
    assert len(calls) == 3
    assert not (out / ".walk.tmp.mp4").exists() and not (out / "walk.mp4").exists()


def test_demo_reports_unreadable_input(tmp_path, capsys):
    demo = _load_tool()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    config = os.path.join(_REPO, "configs", "ifc", "synthetic_R18.yaml")
    code = demo.main(
        [
            "--input",
            str(bad),
            "--config-file",
            config,
            "--output",
            str(tmp_path / "o"),
            "--no-progress",
            "--allow-random-weights",
            "--opts",
            "MODEL.DEVICE",
            "cpu",
        ]
    )
    assert code == 2 and "broken.mp4" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "broken.mp4")
