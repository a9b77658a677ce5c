"""tools/evaluate.py: scores a results file without a model; clear errors for bad files."""
import json
import os
import subprocess
import sys

import pytest

from ytvis_test_utils import pred, two_video_gt

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "evaluate.py")


def _run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, cwd=REPO, timeout=120)


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


def test_evaluate_tool_errors_name_the_file(files, tmp_path):
    gt_path, res_path = files
    missing = str(tmp_path / "nope.json")
    proc = _run(gt_path, missing)
    assert proc.returncode == 2 and "nope.json" in proc.stderr and "does not exist" in proc.stderr
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    proc = _run(str(corrupt), res_path)
    assert proc.returncode == 2 and "corrupt.json" in proc.stderr and "not valid JSON" in proc.stderr
    proc = _run(gt_path, str(corrupt))
    assert proc.returncode == 2 and "corrupt.json" in proc.stderr
