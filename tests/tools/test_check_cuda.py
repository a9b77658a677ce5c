"""tools/check_cuda.py on a machine without CUDA: the skip, the table, the JSON, and its checks run
on the
CPU with detectron2's compiled extension hidden (the GPU machines have no build of it)."""

import json
import os
import subprocess
import sys

import torch

from tests.tools.tool_loading import REPO, load_tool

HIDE_EXTENSION = os.path.join(REPO, "tests", "engine", "without_detectron2_extension.py")
# detectron2's own optional imports, each inside its try/except: these attempts are expected.
DETECTRON2_OPTIONAL_IMPORTERS = (
    "detectron2/layers/deform_conv.py",
    "detectron2/evaluation/fast_eval_api.py",
    "detectron2/utils/collect_env.py",
)


def test_without_cuda_it_says_so_and_runs_nothing(monkeypatch, capsys, tmp_path):
    tool = load_tool("check_cuda.py")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "table.json"
    assert tool.main(["--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CUDA is not available" in printed and "no check was run" in printed
    assert not out.exists()


def test_table_marks_failures_and_keeps_cells_on_one_line():
    tool = load_tool("check_cuda.py")
    rows = [
        {
            "method": "vita",
            "config": "ytvis19_R50",
            "check": "train AMP",
            "status": "ok",
            "s_per_iter": 0.51234,
            "peak_gb": 3.21,
            "detail": "loss 9 -> 8",
        },
        {
            "method": "ifc",
            "config": "ytvis19_R50",
            "check": "infer 40×360×640",
            "status": "FAIL",
            "detail": "AssertionError: non-finite scores | more\nsecond line",
        },
    ]
    lines = tool.format_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| vita | ytvis19_R50 | train AMP | ok | 0.512 | — | 3.21 |")
    assert (
        "| FAIL |" in lines[3]
        and "second line" in lines[3]
        and lines[3].count("|") == lines[0].count("|")
    )


def test_a_failing_check_becomes_a_row_and_the_exit_status(monkeypatch, tmp_path, capsys):
    tool = load_tool("check_cuda.py")
    rows = []
    tool.run_check(rows, "m", "c", "boom", lambda: 1 / 0, torch.device("cpu"))
    tool.run_check(rows, "m", "c", "fine", lambda: {"fps": 2.0}, torch.device("cpu"))
    assert [r["status"] for r in rows] == ["FAIL", "ok"]
    assert rows[0]["detail"].startswith("ZeroDivisionError") and "Traceback" in rows[0]["traceback"]
    assert rows[1]["fps"] == 2.0


def test_every_method_trains_and_infers_on_cpu_without_the_detectron2_extension(tmp_path):
    """The whole tool on the CPU at small sizes, in a process where `detectron2._C` cannot be
    imported:
    each method builds, trains (fp32 and bfloat16 autocast) and infers with finite, valid outputs,
    and only detectron2's own guarded imports ever asked for the extension."""
    attempts, table = tmp_path / "attempts.txt", tmp_path / "table.json"
    cmd = [
        sys.executable,
        HIDE_EXTENSION,
        str(attempts),
        os.path.join(REPO, "tools", "check_cuda.py"),
        "--device",
        "cpu",
        "--config-names",
        "synthetic_R18",
        "--train-iters",
        "2",
        "--train-size",
        "64",
        "96",
        "--frames",
        "3",
        "--size",
        "64",
        "96",
        "--long-frames",
        "12",
        "--long-size",
        "48",
        "64",
        "--json",
        str(table),
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    result = json.loads(table.read_text())
    failed = [
        f"{r['method']} {r['check']}: {r['detail']}" for r in result["rows"] if r["status"] != "ok"
    ]
    assert not failed and proc.returncode == 0, "\n".join(failed) + proc.stderr[-2000:]
    checks = {(r["method"], r["check"]) for r in result["rows"]}
    from projects import METHODS

    assert {"vistr", "ifc", "seqformer", "vita", "minvis"} <= set(METHODS)
    for method in METHODS:
        for check in ("build", "train fp32", "train AMP", "infer 3×64×96", "infer 12×48×64"):
            assert (method, check) in checks
    importers = attempts.read_text().splitlines() if attempts.exists() else []
    unexpected = [line for line in importers if not line.endswith(DETECTRON2_OPTIONAL_IMPORTERS)]
    assert not unexpected, (
        f"code outside detectron2's optional imports asked for detectron2._C: {unexpected}"
    )
