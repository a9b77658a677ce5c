"""vis_zoo.zoo.runs: training runs (the accuracy subprocess) and what they leave behind
(metrics.json, log.txt, config.yaml)."""

import json
import os
import textwrap

import pytest

from vis_zoo.zoo.runs import accuracy_from_run, parse_train_log, parse_train_metrics, run_accuracy
from tests.zoo.zoo_helpers import D2_LOG, D2_SESSION, fake_run


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


def test_parse_train_log_reads_detectron2_end_of_training_lines(tmp_path):
    path = tmp_path / "log.txt"
    # a resumed run appends: the last process's line counts; past 24 h timedelta prints days
    path.write_text(D2_LOG.format(total="0:01:00") + D2_LOG.format(total="1 day, 2:03:04"))
    res = parse_train_log(str(path))
    assert res["train_s"] == 26 * 3600 + 3 * 60 + 4
    assert res["log_timed_iters"] == 35 and res["log_s_per_iter"] == pytest.approx(0.4957)
    # an initialisation stage (MODEL.INIT_STAGE_CONFIG) trains in the same process: both stages
    # count
    stage = D2_LOG.format(total="0:10:00").replace(D2_SESSION, "")
    path.write_text(D2_LOG.format(total="0:01:00") + D2_LOG.format(total="0:02:00") + stage)
    assert parse_train_log(str(path))["train_s"] == 120 + 600
    path.write_text("[11/25 10:00:01 d2.engine.train_loop]: Starting training from iteration 0\n")
    with pytest.raises(ValueError, match="log.txt: no 'Total training time'"):
        parse_train_log(str(path))
    with pytest.raises(ValueError, match="no training log"):
        parse_train_log(str(tmp_path / "missing" / "log.txt"))


def test_accuracy_from_a_run_with_an_init_stage_reports_both_schedules(tmp_path):
    run = fake_run(tmp_path / "runs" / "vistr")
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
