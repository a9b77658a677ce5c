"""YTVISEvaluator in a real 2-process (gloo, CPU) run: each rank writes its share of the videos to
its own part file, rank 0 joins the parts into one results.json and scores the whole set; no rank
gathers masks through `comm.gather`."""

import json
import logging
import math
import os
import sys

import pytest

HERE = os.path.dirname(__file__)
NAME = "ytvis_two_process_eval_test"


def _register(gt_path: str) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if NAME in DatasetCatalog.list():
        return
    DatasetCatalog.register(NAME, lambda: [])
    MetadataCatalog.get(NAME).set(
        json_file=gt_path,
        evaluator_type="ytvis",
        thing_classes=["cat", "dog"],
        thing_dataset_id_to_contiguous_id={1: 0, 3: 1},
        dataset_kind="video",
    )


def _holds_masks(obj) -> bool:
    """Whether a gathered object holds a results entry (a dict with "segmentations")."""
    if isinstance(obj, dict):
        return "segmentations" in obj or any(_holds_masks(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_holds_masks(v) for v in obj)
    return False


def _worker(
    gt_path: str, out_dir: str, results_only_dir: str, unshared_dirs: list, report_dir: str
) -> None:
    """Runs in each of the 2 processes started by `launch`: a scored evaluation into `out_dir`, a
    results_only one into `results_only_dir`, then a scored one where each process has its own
    folder, `unshared_dirs[rank]`, and the main process cannot read process 1's part (as on two
    machines without a shared file system); what it saw goes to report_dir/<rank>.json."""
    sys.path.insert(
        0, HERE
    )  # the test helpers (spawned children get the parent's sys.path; be explicit)
    from detectron2.utils import comm

    from tests.evaluation.test_ytvis_evaluator import _inputs_outputs
    from tests.evaluation.ytvis_test_utils import two_video_gt
    from vis_zoo.evaluation import YTVISEvaluator

    gathered = []
    real_gather = comm.gather

    def spy_gather(data, *args, **kwargs):
        gathered.append(_holds_masks(data))
        return real_gather(data, *args, **kwargs)

    comm.gather = spy_gather  # the evaluator calls comm.gather through the module
    logs = []
    handler = logging.Handler()
    handler.emit = lambda record: logs.append(record.getMessage())
    logger = logging.getLogger("vis_zoo.evaluation.ytvis_evaluation")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    _register(gt_path)
    _, masks = two_video_gt()
    pairs = _inputs_outputs(masks)
    inp, out = pairs[comm.get_rank()]  # rank 0 has video 10, rank 1 has video 11
    report = {}
    import vis_zoo.evaluation.ytvis_evaluation as evaluation

    readable = evaluation._is_part
    for key, folder, results_only in (
        ("scored", out_dir, False),
        ("results_only", results_only_dir, True),
        ("unshared", unshared_dirs[comm.get_rank()], False),
    ):
        if key == "unshared" and comm.get_rank() == 0:
            evaluation._is_part = lambda path, size: (
                not path.endswith("results.part1.json") and readable(path, size)
            )
        evaluator = YTVISEvaluator(NAME, output_dir=folder, results_only=results_only)
        evaluator.reset()
        evaluator.process([inp], [out])
        report[key] = {"kept": len(evaluator._predictions), "scores": evaluator.evaluate()}
    report["gathered_masks"] = gathered
    report["logs"] = logs
    with open(os.path.join(report_dir, f"{comm.get_rank()}.json"), "w") as f:
        json.dump(report, f)


def _same_numbers(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], abs=1e-12) for k in a
    )


def test_both_ranks_write_parts_joined_in_rank_order_and_scored(tmp_path):
    from vis_zoo.engine.launch import launch

    sys.path.insert(0, HERE)
    from tests.evaluation.test_ytvis_evaluator import _inputs_outputs
    from tests.evaluation.ytvis_test_utils import two_video_gt
    from vis_zoo.evaluation import YTVISEvaluator

    gt, masks = two_video_gt()
    gt_path = str(tmp_path / "gt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    out_dir, ro_dir, report_dir = (str(tmp_path / d) for d in ("out", "results_only", "report"))
    unshared = [str(tmp_path / "machine0"), str(tmp_path / "machine1")]
    for d in (out_dir, ro_dir, report_dir, *unshared):
        os.makedirs(d)
    # Parts left by an interrupted earlier run (of 2 and of 6 processes): never mixed in.
    for name in ("results.part1.json", "results.part5.json"):
        with open(os.path.join(out_dir, name), "w") as f:
            f.write('[{"video_id": 99, "category_id": 1, "score": 1.0, "segmentations": []}]')
    port = 20000 + os.getpid() % 20000
    launch(
        _worker,
        num_gpus_per_machine=2,
        num_machines=1,
        machine_rank=0,
        dist_url=f"tcp://127.0.0.1:{port}",
        args=(gt_path, out_dir, ro_dir, unshared, report_dir),
    )
    reports = [json.load(open(os.path.join(report_dir, f"{r}.json"))) for r in (0, 1)]

    # The same evaluation in one process, for comparison.
    _register(gt_path)
    single_dir = tmp_path / "single"
    evaluator = YTVISEvaluator(NAME, output_dir=str(single_dir))
    evaluator.reset()
    for inp, out in _inputs_outputs(masks):
        evaluator.process([inp], [out])
    single = evaluator.evaluate()["segm"]

    for folder in (out_dir, ro_dir):
        written = (open(os.path.join(folder, "results.json")).read(),)
        # Video 10 (rank 0) then video 11 (rank 1): the single process's file, byte for byte.
        assert written == ((single_dir / "results.json").read_text(),), folder
        assert sorted(os.listdir(folder)) == ["results.json", "results.zip"], "parts removed"
    parsed = json.load(open(os.path.join(out_dir, "results.json")))
    assert [(r["video_id"], r["category_id"]) for r in parsed] == [(10, 1), (10, 1), (11, 3)]

    segm = reports[0]["scored"]["scores"]["segm"]
    assert segm["AP"] == pytest.approx(100.0, abs=1e-9)  # both videos scored
    assert _same_numbers(segm, single)
    assert reports[1]["scored"]["scores"] == {}, "only the main process returns scores"
    for report in reports:
        assert report["results_only"]["scores"] == {}
        assert report["scored"]["kept"] == report["results_only"]["kept"] == 0, "nothing in memory"
        assert report["gathered_masks"] and not any(report["gathered_masks"]), "no masks gathered"
    wrote = [m for m in reports[0]["logs"] if m.startswith("Wrote ")]
    assert len(wrote) == 3 and all(m.startswith("Wrote 3 predicted tracks to ") for m in wrote)
    assert any("results_only: not scoring" in m for m in reports[0]["logs"])

    # Without a shared folder process 1's part reaches the main process over the process group.
    assert os.listdir(unshared[1]) == [], "process 1 removed its part after sending it"
    assert sorted(os.listdir(unshared[0])) == ["results.json", "results.zip"]
    with open(os.path.join(unshared[0], "results.json")) as f:
        assert f.read() == (single_dir / "results.json").read_text()
    assert _same_numbers(reports[0]["unshared"]["scores"]["segm"], single)
    assert any(
        "results.part1.json of process 1 is not readable here" in m for m in reports[0]["logs"]
    )
    assert not any(m.startswith("Wrote ") for m in reports[1]["logs"])


def test_copy_entries_from_joins_results_files_as_text(tmp_path):
    from vis_zoo.evaluation import ResultsJsonWriter, write_results

    entries = [
        {"video_id": v, "category_id": 1, "score": 0.5, "segmentations": [None, {"a": "b"}]}
        for v in range(3)
    ]
    parts = [entries[:2], [], entries[2:], []]
    paths = [write_results(p, str(tmp_path), name=f"part{i}")[0] for i, p in enumerate(parts)]
    with ResultsJsonWriter(str(tmp_path / "joined.json")) as writer:
        for path, part in zip(paths, parts):
            writer.copy_entries_from(path, len(part), block_chars=7)  # blocks cut entries anywhere
    assert writer.entries == 3
    assert (tmp_path / "joined.json").read_text() == json.dumps(entries)
    with pytest.raises(ValueError, match="part0.json"):
        with ResultsJsonWriter(str(tmp_path / "bad.json")) as writer:
            writer.copy_entries_from(paths[0], 0)
    assert not (tmp_path / "bad.json").exists()
