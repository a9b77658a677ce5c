"""YTVISEvaluator in a real 2-process (gloo, CPU) run: each rank scores its share of the videos and
rank 0
gathers them, writes one results.json and scores the whole set."""

import json
import os
import sys

import pytest

HERE = os.path.dirname(__file__)


def _worker(gt_path: str, out_dir: str, result_path: str) -> None:
    """Runs in each of the 2 processes started by detectron2's `launch`."""
    sys.path.insert(
        0, HERE
    )  # the test helpers (spawned children get the parent's sys.path; be explicit)
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.utils import comm

    from tests.evaluation.test_ytvis_evaluator import _inputs_outputs
    from tests.evaluation.ytvis_test_utils import two_video_gt
    from vis_zoo.evaluation import YTVISEvaluator

    name = "ytvis_two_process_eval_test"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(
        json_file=gt_path,
        evaluator_type="ytvis",
        thing_classes=["cat", "dog"],
        thing_dataset_id_to_contiguous_id={1: 0, 3: 1},
        dataset_kind="video",
    )
    _, masks = two_video_gt()
    pairs = _inputs_outputs(masks)
    evaluator = YTVISEvaluator(name, output_dir=out_dir)
    evaluator.reset()
    inp, out = pairs[comm.get_rank()]  # rank 0 has video 10, rank 1 has video 11
    evaluator.process([inp], [out])
    scores = evaluator.evaluate()
    if comm.is_main_process():
        with open(result_path, "w") as f:
            json.dump(scores["segm"], f)
    else:
        assert scores == {}, "only the main process returns scores"


def test_predictions_from_both_ranks_are_gathered_and_scored(tmp_path):
    from vis_zoo.engine.launch import launch

    sys.path.insert(0, HERE)
    from tests.evaluation.ytvis_test_utils import two_video_gt

    gt, _ = two_video_gt()
    gt_path = str(tmp_path / "gt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    out_dir, result_path = str(tmp_path / "out"), str(tmp_path / "scores.json")
    port = 20000 + os.getpid() % 20000
    launch(
        _worker,
        num_gpus_per_machine=2,
        num_machines=1,
        machine_rank=0,
        dist_url=f"tcp://127.0.0.1:{port}",
        args=(gt_path, out_dir, result_path),
    )

    written = json.load(open(os.path.join(out_dir, "results.json")))
    # Both ranks' predictions, in one file: video 10 (rank 0) and video 11 (rank 1).
    assert sorted((r["video_id"], r["category_id"]) for r in written) == [(10, 1), (10, 1), (11, 3)]
    segm = json.load(open(result_path))
    # Scored over both videos: every GT track found (AP 100); video 11's 'dog' alone would give nan
    # for 'cat'.
    assert segm["AP"] == pytest.approx(100.0, abs=1e-9)
    assert segm["AP-dog"] == pytest.approx(100.0, abs=1e-9)
