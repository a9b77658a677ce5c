"""tools/benchmark.py (a --quick end-to-end run with a working and a broken method, --table-only
and --accuracy-from, --long-video-points) and tools/benchmark_official_vita.py. The benchmark
library, vis_zoo/zoo/, is tested in tests/zoo/."""

import json

import numpy as np
import pytest
from PIL import Image

from vis_zoo.zoo import long_video
from vis_zoo.zoo.results import load_results
from tests.tools.tool_loading import load_tool
from tests.zoo.zoo_helpers import IFC_SYNTHETIC, fake_run, make_row


def _load_tool():
    return load_tool("benchmark.py")


def test_quick_benchmark_end_to_end(tmp_path):
    """--quick on a config root holding a working method (IFC under a new name) and a broken one."""
    root = tmp_path / "configs"
    (root / "newmethod").mkdir(parents=True)
    (root / "newmethod" / "synthetic_R18.yaml").write_text(f"_BASE_: {IFC_SYNTHETIC}\n")
    (root / "broken").mkdir()
    (root / "broken" / "synthetic_R18.yaml").write_text(
        f"_BASE_: {IFC_SYNTHETIC}\nMODEL:\n  META_ARCHITECTURE: NoSuchArchitecture\n"
    )
    results, md, plots = tmp_path / "results.json", tmp_path / "MODEL_ZOO.md", tmp_path / "plots"
    argv = [
        "--quick",
        "--config-root",
        str(root),
        "--results",
        str(results),
        "--model-zoo-md",
        str(md),
        "--plots-dir",
        str(plots),
        "--threads",
        "1",
        "--no-progress",
    ]
    tool = _load_tool()  # the tool runs in this process; every measurement runs in a child process
    assert tool.main(argv) == 0

    data = load_results(str(results))
    good, bad = data["rows"]["newmethod/synthetic_R18"], data["rows"]["broken/synthetic_R18"]
    assert "NoSuchArchitecture" in bad["build_error"]
    assert good["params_m"] > 1 and good["gflops_per_frame"] > 0 and good["train_s_per_iter"] > 0
    assert good["machine"]["torch_threads"] == 1 and good["size"] == [64, 96]
    assert [p["frames"] for p in good["curve"]] == [2]  # one inference process per row
    assert all(p["peak_gb"] > 0.1 and p["seconds"] > 0 for p in good["curve"])
    assert "max_frames" not in good and "accuracy" not in good  # no search, no training
    # each stage remembers the run that measured it (the table tags cells by it)
    assert set(good["stage_runs"]) == {"model", "speed", "train_speed"}
    assert good["stage_runs"]["speed"]["settings"]["threads"] == 1
    text = md.read_text()
    assert "| IFC" in text and "NoSuchArchitecture" in text and "quick smoke run" in text
    # the plot is stamped as a smoke run: red text (the one row's line is blue)
    image = np.asarray(Image.open(plots / "memory_time_vs_frames.png").convert("RGB")).astype(int)
    red = (image[..., 0] > 200) & (image[..., 1] < 140) & (image[..., 2] < 140)
    assert red.sum() > 500

    # a partial rerun (one method, one stage) replaces only that row and keeps the other
    (root / "broken" / "synthetic_R18.yaml").write_text(
        f"_BASE_: {IFC_SYNTHETIC}\nMODEL:\n  META_ARCHITECTURE: StillMissing\n"
    )
    assert tool.main(argv + ["--methods", "broken", "--stages", "model"]) == 0
    data2 = load_results(str(results))
    assert "StillMissing" in data2["rows"]["broken/synthetic_R18"]["build_error"]
    assert data2["rows"]["newmethod/synthetic_R18"] == good


def _zoo_paths(tmp_path):
    return [
        "--results",
        str(tmp_path / "results.json"),
        "--model-zoo-md",
        str(tmp_path / "MODEL_ZOO.md"),
        "--plots-dir",
        str(tmp_path / "plots"),
        "--no-progress",
    ]


def test_table_only_accuracy_from_fills_the_row_without_training(tmp_path, monkeypatch):
    import vis_zoo.zoo.benchmark as bench

    monkeypatch.setattr(bench, "run_accuracy", lambda *a, **k: pytest.fail("retrained"))
    row = make_row(
        "ifc/synthetic_R18",
        "ifc",
        "configs/ifc/synthetic_R18.yaml",
        errors={"accuracy": "old failure"},
    )
    row["facts"].update(
        meta_architecture="IFC",
        test_datasets=["synthetic_vis_val"],
        synthetic_test=True,
        max_iter=1200,
    )
    other = make_row("vita/synthetic_R18", "vita", "configs/vita/synthetic_R18.yaml")
    (tmp_path / "results.json").write_text(
        json.dumps({"version": 1, "rows": {row["key"]: row, other["key"]: other}})
    )
    run = fake_run(tmp_path / "runs" / "ifc")
    tool = _load_tool()
    assert (
        tool.main(
            ["--table-only", "--accuracy-from", f"ifc/synthetic_R18={run}"] + _zoo_paths(tmp_path)
        )
        == 0
    )

    data = load_results(str(tmp_path / "results.json"))
    acc = data["rows"]["ifc/synthetic_R18"]["accuracy"]
    assert (acc["AP"], acc["AP50"], acc["AP75"], acc["AR1"], acc["AR10"]) == (
        11.0,
        22.0,
        6.0,
        33.0,
        44.0,
    )
    assert acc["wall_s"] == 250.0 and acc["wall_includes_final_eval"] is False
    assert (
        acc["source"] == run and acc["max_iter"] == 40
    )  # the run's own schedule (config.yaml), not the row's
    assert acc["dataset"] == "synthetic_vis_val" and acc["eval_iteration"] == 39
    assert "accuracy" not in data["rows"]["ifc/synthetic_R18"]["errors"]
    assert data["rows"]["vita/synthetic_R18"] == other  # other rows untouched
    text = (tmp_path / "MODEL_ZOO.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| IFC"))
    assert "| 11.0 | 22.0 | 6.0 | 33.0 | 44.0 | 4m10s ‡ |" in line
    assert f"from the finished run `{run}`, 40 iterations" in text


def test_accuracy_from_errors_name_the_key(tmp_path, capsys):
    row = make_row("ifc/synthetic_R18", "ifc", "configs/ifc/synthetic_R18.yaml")
    row["facts"]["meta_architecture"] = "IFC"
    (tmp_path / "results.json").write_text(json.dumps({"version": 1, "rows": {row["key"]: row}}))
    before = (tmp_path / "results.json").read_text()
    tool = _load_tool()
    good = fake_run(tmp_path / "good")
    cases = [
        (f"vistr/synthetic_R18={good}", ["vistr/synthetic_R18", "no row"]),  # no such row
        (
            f"ifc/synthetic_R18={fake_run(tmp_path / 'nometrics', metrics=False)}",
            ["ifc/synthetic_R18", "metrics.json"],
        ),
        (
            f"ifc/synthetic_R18={fake_run(tmp_path / 'unfinished', total='x')}",
            ["ifc/synthetic_R18", "log.txt"],
        ),
        (f"ifc/synthetic_R18={tmp_path / 'missing'}", ["ifc/synthetic_R18", "does not exist"]),
        (
            f"ifc/synthetic_R18={fake_run(tmp_path / 'vita', arch='VITA')}",
            ["ifc/synthetic_R18", "VITA"],
        ),
        ("ifc/synthetic_R18", ["KEY=RUN_DIR"]),
    ]
    for value, words in cases:
        assert tool.main(["--table-only", "--accuracy-from", value] + _zoo_paths(tmp_path)) == 2, (
            value
        )
        err = capsys.readouterr().err
        assert all(w in err for w in words), (value, err)
    assert (tmp_path / "results.json").read_text() == before  # nothing written on an error


def test_accuracy_from_with_other_stages_never_retrains(tmp_path, monkeypatch):
    """Benchmarked rows take the run's accuracy instead of the accuracy stage; a given row that is
    not
    benchmarked now is filled into the results file too."""
    import vis_zoo.zoo.benchmark as bench

    monkeypatch.setattr(bench, "run_accuracy", lambda *a, **k: pytest.fail("retrained"))
    facts = {
        "meta_architecture": "IFC",
        "backbone": "R-18",
        "test_datasets": ["synthetic_vis_val"],
        "synthetic_test": True,
        "default_size": [64, 96],
        "max_iter": 1200,
    }
    monkeypatch.setattr(
        bench,
        "run_child",
        lambda kind, spec, **k: {
            "facts": facts,
            "size": [64, 96],
            "params_m": 1.0,
            "trainable_params_m": 1.0,
            "errors": {},
        },
    )
    root = tmp_path / "configs"
    for method in ("alpha", "beta"):
        (root / method).mkdir(parents=True)
        (root / method / "synthetic_R18.yaml").write_text(f"_BASE_: {IFC_SYNTHETIC}\n")
    kept = make_row("gamma/synthetic_R18", "gamma", "configs/gamma/synthetic_R18.yaml")
    (tmp_path / "results.json").write_text(json.dumps({"version": 1, "rows": {kept["key"]: kept}}))
    runs = [
        fake_run(tmp_path / "a", total="0:00:30"),
        fake_run(tmp_path / "g", total="0:00:40", arch="GAMMA"),
    ]
    tool = _load_tool()
    argv = [
        "--config-root",
        str(root),
        "--methods",
        "alpha",
        "--stages",
        "model",
        "accuracy",
        "--threads",
        "1",
        "--accuracy-from",
        f"alpha/synthetic_R18={runs[0]}",
        "--accuracy-from",
        f"gamma/synthetic_R18={runs[1]}",
    ]
    assert tool.main(argv + _zoo_paths(tmp_path)) == 0
    rows = load_results(str(tmp_path / "results.json"))["rows"]
    assert sorted(rows) == ["alpha/synthetic_R18", "gamma/synthetic_R18"]
    assert (
        rows["alpha/synthetic_R18"]["accuracy"]["wall_s"] == 30.0
        and rows["alpha/synthetic_R18"]["params_m"] == 1.0
    )
    assert rows["gamma/synthetic_R18"]["accuracy"]["wall_s"] == 40.0
    # a key neither in the results nor benchmarked now fails before any measurement
    monkeypatch.setattr(bench, "run_child", lambda *a, **k: pytest.fail("measured"))
    assert tool.main(argv[:-1] + [f"beta/synthetic_R18={runs[1]}"] + _zoo_paths(tmp_path)) == 2


def test_long_video_points_from_the_command_line():
    tool = load_tool("benchmark.py")
    args = tool.parse_args(
        ["--stages", "long_video", "--long-video-points", "180x320x100", "360X640x1000"]
    )
    settings = tool.build_settings(args)
    assert settings.long_video_points == ((180, 320, 100), (360, 640, 1000))
    assert tool.build_settings(tool.parse_args([])).long_video_points == (
        long_video.LONG_VIDEO_POINTS
    )
    for bad in ("180x320", "180x320x0", "axbxc"):
        with pytest.raises(SystemExit):
            tool.parse_args(["--long-video-points", bad])


def test_official_vita_timer_checks_its_root(tmp_path, capsys):
    """The official-code timer refuses a folder without the official `vita` package (before
    importing)."""
    module = load_tool("benchmark_official_vita.py")
    with pytest.raises(SystemExit):
        module.main(["--official-root", str(tmp_path), "--frames", "2"])
    assert "no `vita` package there" in capsys.readouterr().err
