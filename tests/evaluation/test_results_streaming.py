"""results.json written entry by entry and frame by frame: the same bytes as the whole list at
once, nothing at the final path until it is complete, and a results-only evaluator that keeps no
masks in memory."""

import json
import os

import pytest
import torch

from vis_zoo.evaluation import (
    ResultsJsonWriter,
    YTVISEvaluator,
    video_output_to_results,
    write_results,
)
from vis_zoo.modeling.postprocessing import VideoMaskWriter


def _output(num_frames=6, size=(8, 10), seed=0):
    """A model output whose masks are on disk (`StoredTrackMasks`), track 1 absent on frame 2."""
    g = torch.Generator().manual_seed(seed)
    writer = VideoMaskWriter(num_frames, size, output_rle=True)
    for t in range(num_frames):
        masks = torch.rand(2, *size, generator=g) > 0.5
        writer.write_binary(t, masks, torch.tensor([True, t != 2]))
    return {
        "image_size": size,
        "pred_scores": torch.tensor([0.9, 0.4]),
        "pred_labels": torch.tensor([1, 0]),
        "pred_masks": writer.track_masks(2),
    }


def test_streamed_file_equals_the_whole_list_and_appears_only_when_complete(tmp_path):
    outputs = [_output(seed=s) for s in range(2)]
    entries = [
        e
        for v, out in enumerate(outputs)
        for e in video_output_to_results(v, out, length=6, height=8, width=10)
    ]
    expected = json.dumps(entries)
    path = tmp_path / "results.json"
    writer = ResultsJsonWriter(str(path))
    assert writer.add_video(0, outputs[0], length=6, height=8, width=10) == 2
    assert not path.exists()  # under a temporary name until closed
    writer.add_video(1, outputs[1], length=6, height=8, width=10)
    assert writer.close() == str(path) and path.read_text() == expected
    assert json.loads(path.read_text())[1]["segmentations"][2] is None
    write_results(entries, str(tmp_path / "whole"))
    assert (tmp_path / "whole" / "results.json").read_text() == expected

    with pytest.raises(ValueError, match="video 3, track 0: 6 frames of masks, the video has 7"):
        with ResultsJsonWriter(str(tmp_path / "broken.json")) as broken:
            broken.add_video(3, outputs[0], length=7, height=8, width=10)
    assert sorted(os.listdir(tmp_path)) == ["results.json", "whole"]  # no temporary file left


def test_results_only_evaluator_streams_and_keeps_no_masks(tmp_path):
    evaluator = YTVISEvaluator(
        "synthetic_vis_val", str(tmp_path), distributed=False, results_only=True
    )
    evaluator.reset()
    inputs = [{"video_id": v, "height": 8, "width": 10, "length": 6} for v in range(3)]
    for inp in inputs:
        evaluator.process([inp], [_output(seed=inp["video_id"])])
    assert evaluator._predictions == [] and not (tmp_path / "results.json").exists()
    assert evaluator.evaluate() == {}
    written = json.loads((tmp_path / "results.json").read_text())
    assert [e["video_id"] for e in written] == [0, 0, 1, 1, 2, 2]
    assert (tmp_path / "results.zip").exists()
