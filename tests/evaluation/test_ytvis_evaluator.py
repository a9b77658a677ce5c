"""YTVISEvaluator end to end on a tiny GT JSON, and the output -> results conversion helpers."""

import json
import uuid
import zipfile

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from vis_zoo.evaluation import (
    YTVISEvaluator,
    encode_track_masks,
    load_results_file,
    video_output_to_results,
)
from tests.evaluation.ytvis_test_utils import box, rle, two_video_gt


def _register(gt: dict, tmp_path, evaluator_type="ytvis") -> str:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    name = f"ytvis_eval_test_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(
        json_file=str(path),
        evaluator_type=evaluator_type,
        thing_classes=["cat", "dog"],
        thing_dataset_id_to_contiguous_id={1: 0, 3: 1},
        dataset_kind="video",
    )
    return name


def _inputs_outputs(masks):
    """Model-style inputs/outputs for the two videos of `two_video_gt`, contiguous labels."""
    v10 = {"video_id": 10, "height": 64, "width": 64, "length": 3, "file_names": ["a", "b", "c"]}
    v11 = {"video_id": 11, "height": 64, "width": 64, "length": 2, "file_names": ["a", "b"]}

    def stack(frames):
        return torch.from_numpy(
            np.stack([np.zeros((64, 64), np.uint8) if m is None else m for m in frames])
        ).bool()

    out10 = {
        "image_size": (64, 64),
        "pred_scores": torch.tensor([0.9, 0.8]),
        "pred_labels": torch.tensor([0, 0]),
        "pred_masks": [stack(masks[1]), stack(masks[2])],
    }
    # Long-video style: the second video's masks come as a list of RLEs.
    out11 = {
        "image_size": (64, 64),
        "pred_scores": torch.tensor([0.7]),
        "pred_labels": torch.tensor([1]),
        "pred_masks": [[rle(m) for m in masks[3]]],
    }
    return [(v10, out10), (v11, out11)]


def test_evaluator_writes_submission_and_scores(tmp_path):
    gt, masks = two_video_gt()
    name = _register(gt, tmp_path)
    out_dir = tmp_path / "out"
    evaluator = YTVISEvaluator(name, output_dir=str(out_dir))
    evaluator.reset()
    for inp, out in _inputs_outputs(masks):
        evaluator.process([inp], out)  # a single output dict for a single input is accepted
    scores = evaluator.evaluate()

    segm = scores["segm"]
    assert segm["AP"] == pytest.approx(100.0, abs=1e-9)
    assert segm["AR1"] == pytest.approx(75.0, abs=1e-9)  # two 'cat' tracks in video 10
    assert np.isnan(segm["APl"])  # undefined -> nan (detectron2 convention)
    assert segm["AP-cat"] == pytest.approx(100.0, abs=1e-9) and segm["AP-dog"] == pytest.approx(
        100.0, abs=1e-9
    )

    written = json.loads((out_dir / "results.json").read_text())
    assert sorted((r["video_id"], r["category_id"]) for r in written) == [(10, 1), (10, 1), (11, 3)]
    with zipfile.ZipFile(out_dir / "results.zip") as zf:
        assert zf.namelist() == ["results.json"]
        assert json.loads(zf.read("results.json")) == written
    assert load_results_file(str(out_dir / "results.zip")) == written
    # Every frame encoded, counts as str (JSON), decoding back to the input masks.
    track = next(r for r in written if r["score"] == pytest.approx(0.8))
    assert len(track["segmentations"]) == 3 and isinstance(track["segmentations"][0]["counts"], str)
    np.testing.assert_array_equal(mask_util.decode(track["segmentations"][1]), masks[2][1])
    assert mask_util.area(track["segmentations"][2]) == 0  # absent GT frame predicted empty


def test_evaluator_without_annotations_writes_results_and_returns_empty(tmp_path, caplog):
    gt, masks = two_video_gt()
    gt.pop("annotations")
    name = _register(gt, tmp_path)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"), distributed=False)
    evaluator.reset()
    for inp, out in _inputs_outputs(masks):
        evaluator.process([inp], [out])
    with caplog.at_level("WARNING"):
        assert evaluator.evaluate() == {}
    assert "no local score is possible" in caplog.text
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())) == 3
    assert (tmp_path / "out" / "results.zip").is_file()


def test_evaluator_ovis_from_metadata(tmp_path):
    gt, masks = two_video_gt()
    for ann in gt["annotations"]:
        ann["occlusion"] = [None if s is None else "no_occlusion" for s in ann["segmentations"]]
    name = _register(gt, tmp_path, evaluator_type="ovis")
    evaluator = YTVISEvaluator(name)
    evaluator.reset()
    for inp, out in _inputs_outputs(masks):
        evaluator.process([inp], [out])
    segm = evaluator.evaluate()["segm"]
    assert segm["APso"] == pytest.approx(100.0, abs=1e-9)  # every track is unoccluded: light band
    assert np.isnan(segm["APho"])


def test_process_rejects_wrong_frame_count_and_mask_size(tmp_path):
    gt, masks = two_video_gt()
    evaluator = YTVISEvaluator(_register(gt, tmp_path))
    evaluator.reset()
    (v10, out10), _ = _inputs_outputs(masks)
    bad = dict(out10, pred_masks=[m[:2] for m in out10["pred_masks"]])
    with pytest.raises(ValueError, match="video 10, track 0: 2 frames of masks, the video has 3"):
        evaluator.process([v10], [bad])
    bad = dict(out10, pred_masks=[torch.zeros(3, 32, 64, dtype=torch.bool)] * 2)
    with pytest.raises(
        ValueError, match=r"video 10, track 0: mask size \[32, 64\] != video size \[64, 64\]"
    ):
        evaluator.process([v10], [bad])


def test_video_output_to_results_maps_labels_and_validates():
    masks = torch.zeros(2, 2, 8, 8, dtype=torch.bool)
    masks[0, :, 1:4, 1:4] = True
    out = {
        "pred_scores": torch.tensor([0.5, 0.25]),
        "pred_labels": torch.tensor([1, 0]),
        "pred_masks": masks,
    }
    res = video_output_to_results(
        7, out, length=2, height=8, width=8, contiguous_to_dataset_id={0: 4, 1: 9}
    )
    assert [(r["category_id"], r["score"]) for r in res] == [(9, 0.5), (4, 0.25)]
    assert mask_util.area(res[0]["segmentations"]).tolist() == [9, 9]
    with pytest.raises(ValueError, match="video 7: predicted label 1 is not a contiguous id"):
        video_output_to_results(
            7, out, length=2, height=8, width=8, contiguous_to_dataset_id={0: 4}
        )
    with pytest.raises(ValueError, match="video 7: 2 scores, 2 labels and 1 masks"):
        video_output_to_results(7, dict(out, pred_masks=masks[:1]), length=2, height=8, width=8)
    with pytest.raises(ValueError, match="boolean"):
        encode_track_masks(torch.rand(2, 8, 8))


def test_encode_track_masks_round_trip():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 9, 7)) < 0.4
    rles = encode_track_masks(torch.from_numpy(masks))
    assert all(isinstance(r["counts"], str) and r["size"] == [9, 7] for r in rles)
    decoded = np.stack([mask_util.decode(r) for r in rles])
    np.testing.assert_array_equal(decoded, masks)


def test_uncompressed_rle_prediction_is_accepted():
    m = box(1, 1, 3, 4, height=6, width=5)
    flat = m.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    out = {
        "pred_scores": [0.5],
        "pred_labels": [0],
        "pred_masks": [[{"size": [6, 5], "counts": counts}]],
    }
    res = video_output_to_results(1, out, length=1, height=6, width=5)
    np.testing.assert_array_equal(mask_util.decode(res[0]["segmentations"][0]), m)
