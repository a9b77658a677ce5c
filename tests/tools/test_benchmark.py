"""tools/benchmark.py and vis_zoo.zoo.{benchmark,table}: discovery of methods, the max-T search, the
accuracy subprocess, the table, and a --quick end-to-end run with a working and a broken method."""

import json
import os
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from vis_zoo.zoo.benchmark import (
    count_gflops_per_frame,
    discover_configs,
    load_results,
    parse_train_log,
    parse_train_metrics,
    random_training_batch,
    run_accuracy,
    search_max_frames,
)
from vis_zoo.zoo.table import (
    BEGIN_MARKER,
    END_MARKER,
    plot_ap_vs_train_time,
    render_table,
    update_model_zoo,
)
from tests.tools.tool_loading import load_tool

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_IFC_SYNTHETIC = os.path.join(_REPO, "configs", "ifc", "synthetic_R18.yaml")


def _load_tool():
    return load_tool("benchmark.py")


def test_discover_configs_finds_every_method_folder(tmp_path):
    for method, names in {
        "zeta": ["synthetic_R18", "ytvis19_R50"],
        "alpha": ["synthetic_R18"],
        "beta": [],
    }.items():
        (tmp_path / method).mkdir()
        for n in names:
            (tmp_path / method / f"{n}.yaml").write_text("MODEL: {}\n")
    keys = [e.key for e in discover_configs(str(tmp_path))]
    assert keys == ["alpha/synthetic_R18", "zeta/synthetic_R18", "zeta/ytvis19_R50"]
    assert [
        e.key for e in discover_configs(str(tmp_path), methods=["zeta"], names=["ytvis19_R50"])
    ] == ["zeta/ytvis19_R50"]
    with pytest.raises(ValueError, match="gamma"):
        discover_configs(str(tmp_path), methods=["gamma"])
    # the repository's own methods are all found
    methods = {e.method for e in discover_configs(os.path.join(_REPO, "configs"))}
    assert {"ifc", "vistr", "seqformer", "vita", "minvis"} <= methods


def test_search_max_frames_doubles_then_bisects():
    limit = 37
    seen = []

    def probe(t):
        seen.append(t)
        return {"peak_gb": t / 10, "over_budget": t > limit}

    res = search_max_frames(probe, start=8, cap=64)
    assert seen[:4] == [8, 16, 32, 64]
    assert limit - limit // 8 <= res["max_frames"] <= limit and not res["capped"]
    assert res["first_failure"] > res["max_frames"] and len(res["probes"]) == len(seen)

    res = search_max_frames(lambda t: {"over_budget": False}, start=3, cap=20)
    assert res["max_frames"] == 20 and res["capped"]

    res = search_max_frames(lambda t: {"error": "boom"}, start=4, cap=8)
    assert res["max_frames"] == 0 and res["probe_errors"][0] == "boom"


def test_parse_train_metrics_reads_the_last_evaluation(tmp_path):
    path = tmp_path / "metrics.json"
    lines = [
        {"iteration": 0, "total_loss": 3.0},
        {"iteration": 19, "time": 0.5},
        {
            "iteration": 19,
            "segm/AP": 1.0,
            "segm/AP50": 2.0,
            "segm/AP75": 0.5,
            "segm/AR1": 3.0,
            "segm/AR10": 4.0,
        },
        {"iteration": 39, "time": 0.7},
        {"iteration": 39, "time": 0.9},
        {
            "iteration": 39,
            "segm/AP": 10.0,
            "segm/AP50": 20.0,
            "segm/AP75": 5.0,
            "segm/AR1": 30.0,
            "segm/AR10": 40.0,
        },
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    res = parse_train_metrics(str(path))
    assert (res["AP"], res["AP50"], res["AP75"], res["AR1"], res["AR10"]) == (
        10.0,
        20.0,
        5.0,
        30.0,
        40.0,
    )
    assert res["eval_iteration"] == 39 and res["schedule_s_per_iter"] == pytest.approx(0.7)
    path.write_text(json.dumps({"iteration": 1, "time": 0.1}) + "\n")
    with pytest.raises(ValueError, match="no evaluation"):
        parse_train_metrics(str(path))
    with pytest.raises(ValueError, match="no metrics file"):
        parse_train_metrics(str(tmp_path / "missing.json"))


def test_run_accuracy_trains_in_a_subprocess(tmp_path):
    # A stand-in for tools/train_net.py: records its argv, writes a metrics.json into OUTPUT_DIR.
    script = tmp_path / "fake_train.py"
    script.write_text(
        textwrap.dedent("""
        import json, os, sys
        args = sys.argv[1:]
        out = args[args.index("OUTPUT_DIR") + 1]
        json.dump(args, open(os.path.join(out, "argv.json"), "w"))
        if "FAIL" in args:
            sys.exit("training diverged")
        with open(os.path.join(out, "metrics.json"), "w") as f:
            metrics = {"iteration": 1, "segm/AP": 12.5, "segm/AP50": 30.0, "segm/AP75": 10.0,
                       "segm/AR1": 14.0, "segm/AR10": 20.0}
            f.write(json.dumps(metrics) + "\\n")
    """)
    )
    out = tmp_path / "run"
    res = run_accuracy(
        "cfg.yaml",
        str(out),
        device="cpu",
        threads=1,
        opts=["SOLVER.MAX_ITER", "2"],
        train_script=str(script),
    )
    assert res["AP"] == 12.5 and res["AR10"] == 20.0 and res["wall_s"] > 0
    argv = json.load(open(out / "argv.json"))
    assert argv[:2] == ["--config-file", "cfg.yaml"] and argv[-2:] == ["SOLVER.MAX_ITER", "2"]
    assert "MODEL.DEVICE" in argv
    res = run_accuracy(
        "cfg.yaml", str(out), device="cpu", threads=1, opts=["FAIL", "1"], train_script=str(script)
    )
    assert "error" in res and "diverged" in res["error"]  # the stale metrics.json was not read


def test_random_training_batch_follows_the_mapper_contract():
    batch = random_training_batch(2, 3, 32, 48, num_classes=5, seed=1)
    assert len(batch) == 2
    for video in batch:
        assert len(video["image"]) == len(video["instances"]) == 3
        first = video["instances"][0]
        assert first.gt_ids.tolist() == [0, -1] and not first.gt_masks.tensor[1].any()
        for inst in video["instances"]:
            assert inst.image_size == (32, 48) and len(inst) == 2
            present = inst.gt_ids >= 0
            assert inst.gt_masks.tensor[present].flatten(1).any(1).all()


def _row(key, method, config, **extra):
    row = {
        "key": key,
        "method": method,
        "config": config,
        "machine": {
            "cpu": "Test CPU",
            "cores": 2,
            "torch_threads": 2,
            "device": "cpu",
            "torch": "2.x",
        },
        "settings": {
            "device": "cpu",
            "threads": 2,
            "frames": 8,
            "flops_frames": 2,
            "repeats": 3,
            "budget_gb": 4.0,
            "max_frames_cap": 64,
            "train_batch": 2,
            "train_iters": 3,
            "quick": False,
        },
        "facts": {
            "meta_architecture": method.upper(),
            "backbone": "R-50",
            "test_datasets": ["ytvis_2019_val"],
            "synthetic_test": False,
            "default_size": [360, 640],
        },
        "size": [360, 640],
        "errors": {},
    }
    row.update(extra)
    return row


def test_table_rows_errors_and_markers(tmp_path):
    results = {
        "rows": {
            "ifc/ytvis19_R50": _row(
                "ifc/ytvis19_R50",
                "ifc",
                "configs/ifc/ytvis19_R50.yaml",
                params_m=39.15,
                gflops_per_frame=70.1,
                speed={"ms_per_frame": 812.3, "fps": 1.23, "peak_gb": 2.5},
                max_frames={"max_frames": 64, "capped": True, "note": ""},
                train_s_per_iter=9.5,
            ),
            "newm/ytvis19_R50": _row(
                "newm/ytvis19_R50",
                "newm",
                "configs/newm/ytvis19_R50.yaml",
                build_error="KeyError: 'No object named NEWM found'",
            ),
        }
    }
    md = tmp_path / "MODEL_ZOO.md"
    md.write_text(
        f"# Zoo\n\nHand-written intro.\n\n{BEGIN_MARKER}\nold table\n{END_MARKER}\n\nFooter kept.\n"
    )
    update_model_zoo(str(md), results, str(tmp_path))
    text = md.read_text()
    assert text.startswith("# Zoo\n\nHand-written intro.") and text.rstrip().endswith(
        "Footer kept."
    )
    assert "old table" not in text and text.count(BEGIN_MARKER) == 1
    assert "Test CPU (2 cores" in text and "2 CPU threads" in text
    ifc = next(line for line in text.splitlines() if line.startswith("| IFC"))
    cells = [c.strip() for c in ifc.strip("|").split("|")]
    assert cells[3] == "[ytvis19_R50](configs/ifc/ytvis19_R50.yaml)"
    assert cells[5:12] == ["39.15", "70.10", "812", "1.23", "2.50", "≥ 64", "9.50"]
    assert cells[-1] == "42.8"  # paper reference of IFC R-50 on YouTube-VIS 2019
    new = next(line for line in text.splitlines() if line.startswith("| NEWM"))
    assert "error: KeyError" in new and new.rstrip().endswith(
        "| — |"
    )  # no paper number for an unknown method

    # AP-versus-training-time plot: drawn from rows with accuracy only
    assert plot_ap_vs_train_time(results, str(tmp_path / "ap.png")) is None
    results["rows"]["ifc/ytvis19_R50"]["accuracy"] = {"AP": 31.0, "wall_s": 1200.0}
    assert plot_ap_vs_train_time(results, str(tmp_path / "ap.png")) == str(tmp_path / "ap.png")
    assert (tmp_path / "ap.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 31.0 |" in render_table(results, str(tmp_path), str(tmp_path))

    # rows measured with different settings are tagged
    results["rows"]["ifc/ytvis19_R50"]["settings"] = dict(
        results["rows"]["ifc/ytvis19_R50"]["settings"], frames=4
    )
    block = render_table(results, str(tmp_path), str(tmp_path))
    assert "[a]" in block and "[b]" in block


def test_a_cell_measured_in_another_run_than_its_row_carries_its_own_tag(tmp_path):
    """Rerunning one stage of a row (train_speed with 1 thread) must not relabel the speed numbers
    the earlier run measured: the row keeps that run's tag, the rerun cell gets its own."""
    earlier = _row("vita/ytvis19_R50", "vita", "configs/vita/ytvis19_R50.yaml")
    later = {
        "machine": dict(earlier["machine"], torch_threads=1),
        "settings": dict(earlier["settings"], threads=1),
        "updated": "2026-12-06T17:42:19",
    }
    first = {k: earlier[k] for k in ("machine", "settings")}
    row = dict(
        earlier,
        **later,  # the row's last run: the train_speed rerun
        stage_runs={"speed": first, "max_frames": first, "train_speed": later},
        params_m=57.1,
        speed={"ms_per_frame": 1556.0, "fps": 0.64, "peak_gb": 1.32},
        max_frames={"max_frames": 64, "capped": True, "note": ""},
        train_s_per_iter=56.84,
    )
    other = _row(
        "ifc/ytvis19_R50",
        "ifc",
        "configs/ifc/ytvis19_R50.yaml",
        speed={"ms_per_frame": 315.0, "fps": 3.18, "peak_gb": 1.58},
        train_s_per_iter=3.57,
    )
    block = render_table(
        {"rows": {"ifc/ytvis19_R50": other, "vita/ytvis19_R50": row}},
        str(tmp_path),
        str(tmp_path),
    )
    lines = block.splitlines()
    assert sum(line.startswith("- [") for line in lines) == 2  # two settings: 2 and 1 threads
    assert any(line.startswith("- [a]") and "2 CPU threads" in line for line in lines)
    assert any(line.startswith("- [b]") and "1 CPU threads" in line for line in lines)
    vita = next(line for line in lines if line.startswith("| VITA"))
    cells = [c.strip() for c in vita.strip("|").split("|")]
    assert cells[0] == "VITA [a]"  # its speed columns come from the first run
    assert cells[10] == "≥ 64" and cells[11] == "56.84 [b]"
    ifc = next(line for line in lines if line.startswith("| IFC"))
    assert "[b]" not in ifc  # a row of one run: no cell tags


def test_quick_benchmark_end_to_end(tmp_path):
    """--quick on a config root holding a working method (IFC under a new name) and a broken one."""
    root = tmp_path / "configs"
    (root / "newmethod").mkdir(parents=True)
    (root / "newmethod" / "synthetic_R18.yaml").write_text(f"_BASE_: {_IFC_SYNTHETIC}\n")
    (root / "broken").mkdir()
    (root / "broken" / "synthetic_R18.yaml").write_text(
        f"_BASE_: {_IFC_SYNTHETIC}\nMODEL:\n  META_ARCHITECTURE: NoSuchArchitecture\n"
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
        f"_BASE_: {_IFC_SYNTHETIC}\nMODEL:\n  META_ARCHITECTURE: StillMissing\n"
    )
    assert tool.main(argv + ["--methods", "broken", "--stages", "model"]) == 0
    data2 = load_results(str(results))
    assert "StillMissing" in data2["rows"]["broken/synthetic_R18"]["build_error"]
    assert data2["rows"]["newmethod/synthetic_R18"] == good


def test_measuring_child_is_stopped_at_the_memory_limit():
    from vis_zoo.zoo.benchmark import run_child

    spec = {
        "config_file": _IFC_SYNTHETIC,
        "device": "cpu",
        "threads": 1,
        "opts": [],
        "size": [64, 96],
        "train_iters": 1,
        "train_batch": 1,
        "mem_limit_gb": 0.25,
    }  # importing torch alone passes 0.25 GB
    res = run_child("train", spec, threads=1, timeout_s=300)
    assert "passed the limit of 0.25 GB" in res["error"] and res["over_budget"]


# ------------------------------------------------------------------------ accuracy of a finished
# run
_D2_SESSION = (
    "[11/25 09:59:58 detectron2]: Command line arguments: Namespace(config_file='x.yaml')\n"
)
_D2_LOG = (
    _D2_SESSION
    + """\
[11/25 10:00:01 d2.engine.train_loop]: Starting training from iteration 0
[11/25 10:05:00 d2.utils.events]:  eta: 0:00:00  iter: 39  total_loss: 1.2  time: 0.4900
[11/25 10:05:01 d2.engine.hooks]: Overall training speed: 35 iterations in 0:00:17 (0.4957 s / it)
[11/25 10:05:01 d2.engine.hooks]: Total training time: {total} (0:00:03 on hooks)
[11/25 10:05:09 d2.evaluation.testing]: copypaste: Task: segm
"""
)


def _fake_run(run_dir, *, total="0:04:10", metrics=True, log=True, arch="IFC", max_iter=40):
    """What tools/train_net.py leaves in OUTPUT_DIR: metrics.json, log.txt (detectron2 0.7 lines),
    config.yaml."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if metrics:
        lines = [
            {"iteration": 19, "time": 0.5},
            {
                "iteration": 39,
                "segm/AP": 11.0,
                "segm/AP50": 22.0,
                "segm/AP75": 6.0,
                "segm/AR1": 33.0,
                "segm/AR10": 44.0,
            },
        ]
        (run_dir / "metrics.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    if log:
        (run_dir / "log.txt").write_text(_D2_LOG.format(total=total))
    (run_dir / "config.yaml").write_text(
        f"MODEL:\n  META_ARCHITECTURE: {arch}\nSOLVER:\n  MAX_ITER: {max_iter}\n"
        "DATASETS:\n  TEST:\n  - synthetic_vis_val\n"
    )
    return str(run_dir)


def test_parse_train_log_reads_detectron2_end_of_training_lines(tmp_path):
    path = tmp_path / "log.txt"
    # a resumed run appends: the last process's line counts; past 24 h timedelta prints days
    path.write_text(_D2_LOG.format(total="0:01:00") + _D2_LOG.format(total="1 day, 2:03:04"))
    res = parse_train_log(str(path))
    assert res["train_s"] == 26 * 3600 + 3 * 60 + 4
    assert res["log_timed_iters"] == 35 and res["log_s_per_iter"] == pytest.approx(0.4957)
    # an initialisation stage (MODEL.INIT_STAGE_CONFIG) trains in the same process: both stages
    # count
    stage = _D2_LOG.format(total="0:10:00").replace(_D2_SESSION, "")
    path.write_text(_D2_LOG.format(total="0:01:00") + _D2_LOG.format(total="0:02:00") + stage)
    assert parse_train_log(str(path))["train_s"] == 120 + 600
    path.write_text("[11/25 10:00:01 d2.engine.train_loop]: Starting training from iteration 0\n")
    with pytest.raises(ValueError, match="log.txt: no 'Total training time'"):
        parse_train_log(str(path))
    with pytest.raises(ValueError, match="no training log"):
        parse_train_log(str(tmp_path / "missing" / "log.txt"))


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
    row = _row(
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
    other = _row("vita/synthetic_R18", "vita", "configs/vita/synthetic_R18.yaml")
    (tmp_path / "results.json").write_text(
        json.dumps({"version": 1, "rows": {row["key"]: row, other["key"]: other}})
    )
    run = _fake_run(tmp_path / "runs" / "ifc")
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


def test_accuracy_from_a_run_with_an_init_stage_reports_both_schedules(tmp_path):
    from vis_zoo.zoo.benchmark import accuracy_from_run

    run = _fake_run(tmp_path / "runs" / "vistr")
    assert "init_stage_max_iter" not in accuracy_from_run(run)
    os.makedirs(os.path.join(run, "init_stage"))
    with open(os.path.join(run, "init_stage", "config.yaml"), "w") as f:
        f.write("SOLVER:\n  MAX_ITER: 600\n")
    acc = accuracy_from_run(run)
    assert acc["init_stage_max_iter"] == 600 and acc["max_iter"] == 40
    with open(os.path.join(run, "init_stage", "config.yaml"), "w") as f:
        f.write("SOLVER: [unclosed\n")
    with pytest.raises(ValueError, match="init_stage.config.yaml: not readable YAML"):
        accuracy_from_run(run)


def test_accuracy_from_errors_name_the_key(tmp_path, capsys):
    row = _row("ifc/synthetic_R18", "ifc", "configs/ifc/synthetic_R18.yaml")
    row["facts"]["meta_architecture"] = "IFC"
    (tmp_path / "results.json").write_text(json.dumps({"version": 1, "rows": {row["key"]: row}}))
    before = (tmp_path / "results.json").read_text()
    tool = _load_tool()
    good = _fake_run(tmp_path / "good")
    cases = [
        (f"vistr/synthetic_R18={good}", ["vistr/synthetic_R18", "no row"]),  # no such row
        (
            f"ifc/synthetic_R18={_fake_run(tmp_path / 'nometrics', metrics=False)}",
            ["ifc/synthetic_R18", "metrics.json"],
        ),
        (
            f"ifc/synthetic_R18={_fake_run(tmp_path / 'unfinished', total='x')}",
            ["ifc/synthetic_R18", "log.txt"],
        ),
        (f"ifc/synthetic_R18={tmp_path / 'missing'}", ["ifc/synthetic_R18", "does not exist"]),
        (
            f"ifc/synthetic_R18={_fake_run(tmp_path / 'vita', arch='VITA')}",
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
        (root / method / "synthetic_R18.yaml").write_text(f"_BASE_: {_IFC_SYNTHETIC}\n")
    kept = _row("gamma/synthetic_R18", "gamma", "configs/gamma/synthetic_R18.yaml")
    (tmp_path / "results.json").write_text(json.dumps({"version": 1, "rows": {kept["key"]: kept}}))
    runs = [
        _fake_run(tmp_path / "a", total="0:00:30"),
        _fake_run(tmp_path / "g", total="0:00:40", arch="GAMMA"),
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


# ------------------------------------------------------------------------ GFLOPs per processed
# frame
class _PerFrameConv(torch.nn.Module):
    """A 1x1 conv over every frame it runs on: 3*4 multiply-adds per pixel and frame."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def frames_run(self, frames):
        return frames

    def forward(self, videos):
        frames = self.frames_run(torch.stack(list(videos[0]["image"])).float())
        y = self.conv(frames)
        return [{"pred_scores": y.mean((0, 2, 3)), "pred_masks": [y[:, 0] > 0]}]


class _FixedClipConv(_PerFrameConv):
    """Tiles any shorter video to a 5-frame clip (as VisTR does) and says so through the hook."""

    clip = 5

    def frames_run(self, frames):
        n = len(frames.unbind(0))  # a Python int while tracing (frames.shape[0] would be traced)
        return torch.stack([frames[i % n] for i in range(max(self.clip, n))])

    def processed_frames(self, num_frames):
        return max(num_frames, self.clip)


def test_gflops_per_frame_divides_by_the_frames_the_model_processed():
    per_pixel = 3 * 4 / 1e9
    plain = count_gflops_per_frame(_PerFrameConv(), 2, 8, 8)
    clip = count_gflops_per_frame(_FixedClipConv(), 2, 8, 8)
    assert (
        plain["gflops_per_video"] == pytest.approx(2 * 64 * per_pixel)
        and plain["flops_processed_frames"] == 2
    )
    assert clip["gflops_per_video"] == pytest.approx(
        5 * 64 * per_pixel
    )  # the whole clip was computed
    assert (clip["flops_frames"], clip["flops_processed_frames"]) == (2, 5)
    # per frame of work, both models cost the same (before: the clip model showed 2.5x)
    assert (
        clip["gflops_per_frame"]
        == pytest.approx(plain["gflops_per_frame"])
        == pytest.approx(64 * per_pixel)
    )

    # the table divides the per-video count by the processed frames; older rows keep their stored
    # value
    new = _row(
        "vistr/ytvis19_R50",
        "vistr",
        "configs/vistr/ytvis19_R50.yaml",
        gflops_per_video=7.2,
        flops_frames=2,
        flops_processed_frames=36,
        gflops_per_frame=3.6,
    )
    old = _row("ifc/ytvis19_R50", "ifc", "configs/ifc/ytvis19_R50.yaml", gflops_per_frame=1.25)
    block = render_table({"rows": {new["key"]: new, old["key"]: old}}, ".", ".")
    cells = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
        for line in block.splitlines()
        if line.startswith("| VisTR") or line.startswith("| IFC")
    }
    assert cells["VisTR"][6] == "0.20" and cells["IFC"][6] == "1.25"
    assert "number of frames the model processed" in block


def test_official_vita_timer_checks_its_root(tmp_path, capsys):
    """The official-code timer refuses a folder without the official `vita` package (before
    importing)."""
    module = load_tool("benchmark_official_vita.py")
    with pytest.raises(SystemExit):
        module.main(["--official-root", str(tmp_path), "--frames", "2"])
    assert "no `vita` package there" in capsys.readouterr().err
