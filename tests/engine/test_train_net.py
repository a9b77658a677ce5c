"""tools/train_net.py end to end on the synthetic dataset with the test-only minimal model."""
import json
import os
import subprocess
import sys

import pytest

DRIVER = os.path.join(os.path.dirname(__file__), "run_minimal_training.py")
BASE_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Base-VIS.yaml")


def _overrides(output_dir, max_iter, cache_root):
    return [
        "MODEL.META_ARCHITECTURE", "MinimalVISModel",
        "MODEL.DEVICE", "cpu",
        "MODEL.RESNETS.DEPTH", "18",
        "DATASETS.TRAIN", "('synthetic_vis_train',)",
        "DATASETS.TEST", "('synthetic_vis_val',)",
        "DATASETS.SYNTHETIC_ROOT", cache_root,
        "INPUT.MIN_SIZE_TRAIN", "(64,)",
        "INPUT.MAX_SIZE_TRAIN", "128",
        "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "128",
        "INPUT.SAMPLING_FRAME_NUM", "2",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.BASE_LR", "0.01",
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.STEPS", "()",
        "SOLVER.CHECKPOINT_PERIOD", "2",
        "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "1.0",
        "DATALOADER.NUM_WORKERS", "0",
        "TEST.EVAL_PERIOD", "0",
        "OUTPUT_DIR", output_dir,
        "SEED", "1",
    ]


def _run(extra_args, overrides, timeout=600):
    cmd = [sys.executable, DRIVER, "--config-file", BASE_CONFIG, *extra_args, *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _final_iteration(output_dir):
    import torch

    return torch.load(os.path.join(output_dir, "model_final.pth"), map_location="cpu")["iteration"]


def _metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_train_eval_and_resume(synthetic_root, tmp_path):
    out = str(tmp_path / "run")
    log = _run([], _overrides(out, 4, synthetic_root))
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert open(os.path.join(out, "last_checkpoint")).read() == "model_final.pth"
    assert _final_iteration(out) == 3
    assert any("total_loss" in m for m in _metrics(out))
    assert any("segm/AP50" in m for m in _metrics(out))
    # The end-of-training evaluation wrote the submission and scored it (the val split has GT).
    results = os.path.join(out, "inference", "synthetic_vis_val", "results.json")
    assert os.path.isfile(results)
    assert isinstance(json.load(open(results)), list)
    assert "AP50" in log

    # --resume continues from the last checkpoint instead of starting over.
    _run(["--resume"], _overrides(out, 6, synthetic_root))
    assert _final_iteration(out) == 5
    assert "Starting training from iteration 4" in open(os.path.join(out, "log.txt")).read()

    # --eval-only with the trained weights.
    eval_out = str(tmp_path / "eval")
    log = _run(["--eval-only"], _overrides(eval_out, 6, synthetic_root)
               + ["MODEL.WEIGHTS", os.path.join(out, "model_final.pth")])
    assert os.path.isfile(os.path.join(eval_out, "inference", "synthetic_vis_val", "results.json"))
    assert "AP50" in log


def test_two_process_training_on_cpu(synthetic_root, tmp_path):
    out = str(tmp_path / "ddp")
    log = _run(["--num-gpus", "2"], _overrides(out, 2, synthetic_root) + ["TEST.EVAL_PERIOD", "0"])
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert "world size: 2" in log.lower() or "rank 1" in log.lower()


def test_init_stage_trains_first_and_initialises_the_run(synthetic_root, tmp_path):
    from vis_zoo.engine.setup import build_config
    from vis_zoo.zoo.benchmark import parse_train_log

    configs = tmp_path / "configs"
    configs.mkdir()
    stage = build_config(BASE_CONFIG, _overrides("unused", 2, synthetic_root) + ["DATASETS.TEST", "()"])
    (configs / "stage.yaml").write_text(stage.dump())
    run = build_config(BASE_CONFIG, _overrides("unused", 2, synthetic_root) + ["MODEL.INIT_STAGE_CONFIG", "stage.yaml"])
    (configs / "run.yaml").write_text(run.dump())
    out = str(tmp_path / "run")
    cmd = [sys.executable, DRIVER, "--config-file", str(configs / "run.yaml"), "OUTPUT_DIR", out]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stage_weights = os.path.join(out, "init_stage", "model_final.pth")
    assert _final_iteration(os.path.join(out, "init_stage")) == 1
    assert _final_iteration(out) == 1
    log = open(os.path.join(out, "log.txt")).read()
    assert "Init stage: training stage.yaml" in log
    assert f"Loading from {stage_weights}" in log  # the run started from the stage's weights
    # the run's training time counts both stages
    totals = [line for line in log.splitlines() if "Total training time" in line]
    assert len(totals) == 2 and parse_train_log(os.path.join(out, "log.txt"))["train_s"] >= 0

    # a second run into the same folder reuses the finished stage instead of training it again
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Init stage: reusing {stage_weights}" in proc.stdout + proc.stderr


def test_init_stage_config_errors_name_the_key(tmp_path):
    from vis_zoo.engine.init_stage import resolve_init_stage_config

    run = tmp_path / "run.yaml"
    run.write_text("MODEL:\n  INIT_STAGE_CONFIG: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="MODEL.INIT_STAGE_CONFIG 'missing.yaml'.*run.yaml"):
        resolve_init_stage_config("missing.yaml", str(run))
    with pytest.raises(ValueError, match="names the config itself"):
        resolve_init_stage_config("run.yaml", str(run))
    (tmp_path / "stage.yaml").write_text("{}\n")
    assert resolve_init_stage_config("stage.yaml", str(run)) == str(tmp_path / "stage.yaml")
