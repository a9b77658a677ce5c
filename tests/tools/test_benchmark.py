"""tools/benchmark.py and vis_zoo.zoo.{benchmark,table}: discovery of methods, the max-T search, the
accuracy subprocess, the table, and a --quick end-to-end run with a working and a broken method."""
import importlib.util
import json
import os
import textwrap

import pytest

from vis_zoo.zoo.benchmark import (
    discover_configs,
    load_results,
    parse_train_metrics,
    random_training_batch,
    run_accuracy,
    search_max_frames,
)
from vis_zoo.zoo.table import BEGIN_MARKER, END_MARKER, plot_ap_vs_train_time, render_table, update_model_zoo

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_IFC_SYNTHETIC = os.path.join(_REPO, "configs", "ifc", "synthetic_R18.yaml")


def _load_tool():
    path = os.path.join(_REPO, "tools", "benchmark.py")
    spec = importlib.util.spec_from_file_location("vis_zoo_benchmark_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_discover_configs_finds_every_method_folder(tmp_path):
    for method, names in {"zeta": ["synthetic_R18", "ytvis19_R50"], "alpha": ["synthetic_R18"], "beta": []}.items():
        (tmp_path / method).mkdir()
        for n in names:
            (tmp_path / method / f"{n}.yaml").write_text("MODEL: {}\n")
    keys = [e.key for e in discover_configs(str(tmp_path))]
    assert keys == ["alpha/synthetic_R18", "zeta/synthetic_R18", "zeta/ytvis19_R50"]
    assert [e.key for e in discover_configs(str(tmp_path), methods=["zeta"], names=["ytvis19_R50"])] == \
        ["zeta/ytvis19_R50"]
    with pytest.raises(ValueError, match="gamma"):
        discover_configs(str(tmp_path), methods=["gamma"])
    # the repository's own methods are all found
    methods = {e.method for e in discover_configs(os.path.join(_REPO, "configs"))}
    assert {"ifc", "vistr", "seqformer", "vita"} <= methods


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
    lines = [{"iteration": 0, "total_loss": 3.0}, {"iteration": 19, "time": 0.5},
             {"iteration": 19, "segm/AP": 1.0, "segm/AP50": 2.0, "segm/AP75": 0.5, "segm/AR1": 3.0, "segm/AR10": 4.0},
             {"iteration": 39, "time": 0.7}, {"iteration": 39, "time": 0.9},
             {"iteration": 39, "segm/AP": 10.0, "segm/AP50": 20.0, "segm/AP75": 5.0, "segm/AR1": 30.0,
              "segm/AR10": 40.0}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    res = parse_train_metrics(str(path))
    assert (res["AP"], res["AP50"], res["AP75"], res["AR1"], res["AR10"]) == (10.0, 20.0, 5.0, 30.0, 40.0)
    assert res["eval_iteration"] == 39 and res["schedule_s_per_iter"] == pytest.approx(0.7)
    path.write_text(json.dumps({"iteration": 1, "time": 0.1}) + "\n")
    with pytest.raises(ValueError, match="no evaluation"):
        parse_train_metrics(str(path))
    with pytest.raises(ValueError, match="no metrics file"):
        parse_train_metrics(str(tmp_path / "missing.json"))


def test_run_accuracy_trains_in_a_subprocess(tmp_path):
    # A stand-in for tools/train_net.py: records its argv, writes a metrics.json into OUTPUT_DIR.
    script = tmp_path / "fake_train.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys
        args = sys.argv[1:]
        out = args[args.index("OUTPUT_DIR") + 1]
        json.dump(args, open(os.path.join(out, "argv.json"), "w"))
        if "FAIL" in args:
            sys.exit("training diverged")
        with open(os.path.join(out, "metrics.json"), "w") as f:
            f.write(json.dumps({"iteration": 1, "segm/AP": 12.5, "segm/AP50": 30.0, "segm/AP75": 10.0,
                                "segm/AR1": 14.0, "segm/AR10": 20.0}) + "\\n")
    """))
    out = tmp_path / "run"
    res = run_accuracy("cfg.yaml", str(out), device="cpu", threads=1, opts=["SOLVER.MAX_ITER", "2"],
                       train_script=str(script))
    assert res["AP"] == 12.5 and res["AR10"] == 20.0 and res["wall_s"] > 0
    argv = json.load(open(out / "argv.json"))
    assert argv[:2] == ["--config-file", "cfg.yaml"] and argv[-2:] == ["SOLVER.MAX_ITER", "2"]
    assert "MODEL.DEVICE" in argv
    res = run_accuracy("cfg.yaml", str(out), device="cpu", threads=1, opts=["FAIL", "1"], train_script=str(script))
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
    row = {"key": key, "method": method, "config": config, "machine": {"cpu": "Test CPU", "cores": 2,
           "torch_threads": 2, "device": "cpu", "torch": "2.x"},
           "settings": {"device": "cpu", "threads": 2, "frames": 8, "flops_frames": 2, "repeats": 3, "budget_gb": 4.0,
                        "max_frames_cap": 64, "train_batch": 2, "train_iters": 3, "quick": False},
           "facts": {"meta_architecture": method.upper(), "backbone": "R-50", "test_datasets": ["ytvis_2019_val"],
                     "synthetic_test": False, "default_size": [360, 640]}, "size": [360, 640], "errors": {}}
    row.update(extra)
    return row


def test_table_rows_errors_and_markers(tmp_path):
    results = {"rows": {
        "ifc/ytvis19_R50": _row("ifc/ytvis19_R50", "ifc", "configs/ifc/ytvis19_R50.yaml", params_m=39.15,
                                gflops_per_frame=70.1, speed={"ms_per_frame": 812.3, "fps": 1.23, "peak_gb": 2.5},
                                max_frames={"max_frames": 64, "capped": True, "note": ""}, train_s_per_iter=9.5),
        "newm/ytvis19_R50": _row("newm/ytvis19_R50", "newm", "configs/newm/ytvis19_R50.yaml",
                                 build_error="KeyError: 'No object named NEWM found'"),
    }}
    md = tmp_path / "MODEL_ZOO.md"
    md.write_text(f"# Zoo\n\nHand-written intro.\n\n{BEGIN_MARKER}\nold table\n{END_MARKER}\n\nFooter kept.\n")
    update_model_zoo(str(md), results, str(tmp_path))
    text = md.read_text()
    assert text.startswith("# Zoo\n\nHand-written intro.") and text.rstrip().endswith("Footer kept.")
    assert "old table" not in text and text.count(BEGIN_MARKER) == 1
    assert "Test CPU (2 cores" in text and "2 CPU threads" in text
    ifc = next(line for line in text.splitlines() if line.startswith("| IFC"))
    cells = [c.strip() for c in ifc.strip("|").split("|")]
    assert cells[3] == "[ytvis19_R50](configs/ifc/ytvis19_R50.yaml)"
    assert cells[5:12] == ["39.15", "70.10", "812", "1.23", "2.50", "≥ 64", "9.50"]
    assert cells[-1] == "42.8"  # paper reference of IFC R-50 on YouTube-VIS 2019
    new = next(line for line in text.splitlines() if line.startswith("| NEWM"))
    assert "error: KeyError" in new and new.rstrip().endswith("| — |")  # no paper number for an unknown method

    # AP-versus-training-time plot: drawn from rows with accuracy only
    assert plot_ap_vs_train_time(results, str(tmp_path / "ap.png")) is None
    results["rows"]["ifc/ytvis19_R50"]["accuracy"] = {"AP": 31.0, "wall_s": 1200.0}
    assert plot_ap_vs_train_time(results, str(tmp_path / "ap.png")) == str(tmp_path / "ap.png")
    assert (tmp_path / "ap.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 31.0 |" in render_table(results, str(tmp_path), str(tmp_path))

    # rows measured with different settings are tagged
    results["rows"]["ifc/ytvis19_R50"]["settings"] = dict(results["rows"]["ifc/ytvis19_R50"]["settings"], frames=4)
    block = render_table(results, str(tmp_path), str(tmp_path))
    assert "[a]" in block and "[b]" in block


def test_quick_benchmark_end_to_end(tmp_path):
    """--quick on a config root holding a working method (IFC under a new name) and a broken one."""
    root = tmp_path / "configs"
    (root / "newmethod").mkdir(parents=True)
    (root / "newmethod" / "synthetic_R18.yaml").write_text(f"_BASE_: {_IFC_SYNTHETIC}\n")
    (root / "broken").mkdir()
    (root / "broken" / "synthetic_R18.yaml").write_text(
        f"_BASE_: {_IFC_SYNTHETIC}\nMODEL:\n  META_ARCHITECTURE: NoSuchArchitecture\n")
    results, md, plots = tmp_path / "results.json", tmp_path / "MODEL_ZOO.md", tmp_path / "plots"
    argv = ["--quick", "--config-root", str(root), "--results", str(results), "--model-zoo-md", str(md),
            "--plots-dir", str(plots), "--threads", "1", "--no-progress"]
    tool = _load_tool()  # the tool runs in this process; every measurement runs in a child process
    assert tool.main(argv) == 0

    data = load_results(str(results))
    good, bad = data["rows"]["newmethod/synthetic_R18"], data["rows"]["broken/synthetic_R18"]
    assert "NoSuchArchitecture" in bad["build_error"]
    assert good["params_m"] > 1 and good["gflops_per_frame"] > 0 and good["train_s_per_iter"] > 0
    assert good["machine"]["torch_threads"] == 1 and good["size"] == [64, 96]
    assert [p["frames"] for p in good["curve"]] == [1, 2]
    assert all(p["peak_gb"] > 0.1 and p["seconds"] > 0 for p in good["curve"])
    assert good["max_frames"]["max_frames"] == 2 and good["max_frames"]["capped"]
    assert "accuracy" not in good  # --quick trains nothing
    text = md.read_text()
    assert "| IFC" in text and "NoSuchArchitecture" in text and "quick smoke run" in text
    with open(plots / "memory_time_vs_frames.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # a partial rerun (one method, one stage) replaces only that row and keeps the other
    (root / "broken" / "synthetic_R18.yaml").write_text(
        f"_BASE_: {_IFC_SYNTHETIC}\nMODEL:\n  META_ARCHITECTURE: StillMissing\n")
    assert tool.main(argv + ["--methods", "broken", "--stages", "model"]) == 0
    data2 = load_results(str(results))
    assert "StillMissing" in data2["rows"]["broken/synthetic_R18"]["build_error"]
    assert data2["rows"]["newmethod/synthetic_R18"] == good


def test_measuring_child_is_stopped_at_the_memory_limit():
    from vis_zoo.zoo.benchmark import run_child

    spec = {"config_file": _IFC_SYNTHETIC, "device": "cpu", "threads": 1, "opts": [], "size": [64, 96],
            "train_iters": 1, "train_batch": 1, "mem_limit_gb": 0.25}  # importing torch alone passes 0.25 GB
    res = run_child("train", spec, threads=1, timeout_s=300)
    assert "passed the limit of 0.25 GB" in res["error"] and res["over_budget"]
