"""tools/benchmark_evaluator.py on a tiny case, without the reference scorer."""

import json
import math
import os
import runpy

import numpy as np
import pycocotools.mask as mask_util
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
bench = runpy.run_path(
    os.path.join(REPO, "tools", "benchmark_evaluator.py"), run_name="benchmark_evaluator"
)


def test_generated_case_has_the_requested_size_and_is_deterministic():
    spec = bench["scaled"](bench["CASES"]["ovis"], 0.015)  # 2 videos, 12 GT tracks
    assert (spec.videos, spec.gt_tracks) == (2, 12)
    gt, results = bench["make_case"](spec, seed=3)
    assert len(gt["videos"]) == 2 and len(gt["annotations"]) == 12 and len(results) == 20
    assert len(gt["categories"]) == 25
    assert gt == bench["make_case"](spec, seed=3)[0]  # same seed, same files
    assert gt != bench["make_case"](spec, seed=4)[0]
    for ann in gt["annotations"]:
        video = gt["videos"][ann["video_id"] - 1]
        assert len(ann["segmentations"]) == len(ann["occlusion"]) == video["length"]
        assert spec.frames[0] <= video["length"] <= spec.frames[1]
        for seg, area in zip(ann["segmentations"], ann["areas"]):
            # `areas` are the mask areas; absent frames have neither mask nor label.
            assert (seg is None) == (area is None)
            if seg is not None:
                assert seg["size"] == [720, 1280] and int(mask_util.area(seg)) == area
    # Noisy copies of GT tracks overlap them: the case scores neither 0 nor 1.
    from vis_zoo.evaluation import evaluate_ytvis

    ap = evaluate_ytvis(gt, results).stats["AP"]
    assert 0.05 < ap < 0.95


def test_ellipse_runs_match_the_rasterised_mask():
    rng = np.random.default_rng(0)
    for cy, cx, ry, rx in [(10, 12, 6, 9), (0, 0, 30, 30), (19, 5, 25, 3), (-50, -50, 3, 3)]:
        runs = bench["_ellipse_runs"](rng, 20, 24, cy, cx, ry, rx)
        assert sum(runs) == 20 * 24 and all(r > 0 for r in runs[1:])
        mask = mask_util.decode(mask_util.frPyObjects({"counts": runs, "size": [20, 24]}, 20, 24))
        assert mask.shape == (20, 24)


def test_max_stat_difference_treats_undefined_numbers():
    diff = bench["max_stat_difference"]
    nan = float("nan")
    assert diff([0.5, nan, 0.25], [0.5, nan, 0.2500001]) == pytest.approx(1e-7)
    assert math.isinf(diff([0.5, nan], [0.5, 0.0]))  # undefined in one scorer only


def test_benchmark_runs_our_command_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "rows.json"
    code = bench["main"](
        ["--cases", "ytvis", "--scale", "0.01", "--workdir", str(tmp_path), "--json", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| ytvis | tools/evaluate.py |" in printed and " CPUs, " in printed
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["scorer"] == "tools/evaluate.py"
    assert rows[0]["wall_s"] > rows[0]["after_parse_s"] > 0 and rows[0]["peak_rss_mb"] > 10
    if os.path.exists("/proc/self/smaps_rollup"):  # Linux: the sampled memory of the process tree
        assert rows[0]["peak_pss_mb"] > 10
    assert os.path.isfile(tmp_path / "ytvis_gt.json") and os.path.isfile(
        tmp_path / "ytvis_results.json"
    )


def test_benchmark_rejects_a_reference_root_without_the_scorer(tmp_path):
    with pytest.raises(SystemExit) as info:
        bench["main"](["--reference-root", str(tmp_path), "--cases", "ytvis", "--scale", "0.01"])
    assert info.value.code == 2


def test_a_case_already_in_the_workdir_is_reused_only_for_the_same_spec_and_seed(tmp_path):
    spec = bench["scaled"](bench["CASES"]["ytvis"], 0.01)
    gt_path, res_path = bench["write_case"](spec, 0, str(tmp_path))
    first = os.stat(res_path).st_mtime_ns
    assert bench["write_case"](spec, 0, str(tmp_path)) == (gt_path, res_path)
    assert os.stat(res_path).st_mtime_ns == first  # kept: same spec and seed
    with open(gt_path) as f:
        gt0 = json.load(f)
    bench["write_case"](spec, 1, str(tmp_path))  # another seed: regenerated
    with open(gt_path) as f:
        assert json.load(f) != gt0
    os.remove(res_path)  # an incomplete case is regenerated too
    bench["write_case"](spec, 1, str(tmp_path))
    assert os.path.isfile(res_path)
