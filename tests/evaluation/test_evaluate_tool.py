"""tools/evaluate.py: scores a results file without a model; clear errors for bad files."""

import json
import os
import runpy
import subprocess
import sys

import pytest

from tests.evaluation.ytvis_test_utils import pred, two_video_gt

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "evaluate.py")


def _run(*args):
    return subprocess.run(
        [sys.executable, TOOL, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.fixture
def files(tmp_path):
    gt, masks = two_video_gt()
    # 'cat' perfect, 'dog' missed: AP = (1 + 0) / 2.
    results = [pred(10, 1, 0.9, masks[1]), pred(10, 1, 0.8, masks[2])]
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(results))
    return str(gt_path), str(res_path)


def test_evaluate_tool_prints_table_and_json_line(files):
    proc = _run(*files)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    numbers = json.loads(lines[-1])
    assert numbers["AP"] == pytest.approx(50.0, abs=1e-4)
    assert numbers["AP-cat"] == pytest.approx(100.0, abs=1e-4) and numbers["AP-dog"] == 0.0
    assert numbers["APl"] is None  # undefined
    assert "AP50" in proc.stdout.split(lines[-1])[0]  # the table came first


def test_evaluate_tool_missing_file_error_names_it(files, tmp_path):
    gt_path, _ = files
    proc = _run(gt_path, str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and "nope.json" in proc.stderr and "does not exist" in proc.stderr


def _tool_main():
    """tools/evaluate.py's main(), loaded in-process."""
    return runpy.run_path(TOOL, run_name="evaluate_tool")["main"]


def test_evaluate_tool_corrupt_or_unscorable_files(files, tmp_path, capsys):
    gt_path, res_path = files
    main = _tool_main()
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    assert main([str(corrupt), res_path]) == 2
    err = capsys.readouterr().err
    assert "corrupt.json" in err and "not valid JSON" in err
    assert main([gt_path, str(corrupt)]) == 2
    assert "corrupt.json" in capsys.readouterr().err
    no_ann = tmp_path / "valid_split.json"
    no_ann.write_text(json.dumps(dict(json.loads(open(gt_path).read()), annotations=None)))
    assert main([str(no_ann), res_path]) == 2
    assert "valid_split.json" in capsys.readouterr().err
    assert main([gt_path, res_path]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["AP"] == pytest.approx(
        50.0, abs=1e-4
    )


def test_evaluate_tool_imports_neither_torch_nor_detectron2(files):
    """The command loads only the metric (numpy + pycocotools): importing torch and detectron2
    would cost ~2 s and ~550 MB before any work."""
    gt_path, res_path = files
    script = (
        "import runpy, sys, json\n"
        f"tool = runpy.run_path({TOOL!r}, run_name='evaluate_tool')\n"
        f"code = tool['main']([{gt_path!r}, {res_path!r}, '--workers', '1'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'detectron2', "
        "'vis_zoo', 'matplotlib'))\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    assert report["heavy"] == []


def test_evaluate_tool_gt_without_videos_names_the_gt_file(files, tmp_path, capsys):
    gt_path, res_path = files
    no_videos = tmp_path / "no_videos.json"
    no_videos.write_text(json.dumps(dict(json.loads(open(gt_path).read()), videos=[])))
    assert _tool_main()([str(no_videos), res_path]) == 2
    err = capsys.readouterr().err
    assert "no_videos.json" in err and "has no videos" in err and "result" not in err


def test_evaluate_tool_timings_and_two_workers(files):
    gt_path, res_path = files
    proc = _run(gt_path, res_path, "--timings", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["AP"] == pytest.approx(50.0, abs=1e-4)
    timings = json.loads([line for line in proc.stderr.splitlines() if line.startswith("{")][-1])
    assert set(timings) == {"import_s", "parse_s", "after_parse_s", "cpu_s", "worker_cpu_s"}
    assert all(v >= 0 for v in timings.values())
