"""tools/train_net.py end to end on the synthetic dataset with the test-only minimal model."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

DRIVER = os.path.join(os.path.dirname(__file__), "run_minimal_training.py")
BASE_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Base-VIS.yaml")


def _overrides(output_dir, max_iter, cache_root):
    return [
        "MODEL.META_ARCHITECTURE",
        "MinimalVISModel",
        "MODEL.DEVICE",
        "cpu",
        "MODEL.RESNETS.DEPTH",
        "18",
        "DATASETS.TRAIN",
        "('synthetic_vis_train',)",
        "DATASETS.TEST",
        "('synthetic_vis_val',)",
        "DATASETS.SYNTHETIC_ROOT",
        cache_root,
        "INPUT.MIN_SIZE_TRAIN",
        "(64,)",
        "INPUT.MAX_SIZE_TRAIN",
        "128",
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.MAX_SIZE_TEST",
        "128",
        "INPUT.SAMPLING_FRAME_NUM",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.BASE_LR",
        "0.01",
        "SOLVER.MAX_ITER",
        str(max_iter),
        "SOLVER.STEPS",
        "()",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "SOLVER.CLIP_GRADIENTS.CLIP_VALUE",
        "1.0",
        "DATALOADER.NUM_WORKERS",
        "0",
        "TEST.EVAL_PERIOD",
        "0",
        "OUTPUT_DIR",
        output_dir,
        "SEED",
        "1",
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
    log = _run(
        ["--eval-only"],
        _overrides(eval_out, 6, synthetic_root)
        + ["MODEL.WEIGHTS", os.path.join(out, "model_final.pth")],
    )
    assert os.path.isfile(os.path.join(eval_out, "inference", "synthetic_vis_val", "results.json"))
    assert "AP50" in log


def test_two_process_training_on_cpu(synthetic_root, tmp_path):
    out = str(tmp_path / "ddp")
    _run(["--num-gpus", "2"], _overrides(out, 2, synthetic_root) + ["TEST.EVAL_PERIOD", "0"])
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    # the process count is a detail for log.txt, not the terminal
    assert "World size: 2" in open(os.path.join(out, "log.txt")).read()


def test_init_stage_trains_first_and_initialises_the_run(synthetic_root, tmp_path):
    from vis_zoo.engine.setup import build_config
    from vis_zoo.zoo.benchmark import parse_train_log

    configs = tmp_path / "configs"
    configs.mkdir()
    stage = build_config(
        BASE_CONFIG, _overrides("unused", 2, synthetic_root) + ["DATASETS.TEST", "()"]
    )
    (configs / "stage.yaml").write_text(stage.dump())
    run = build_config(
        BASE_CONFIG,
        _overrides("unused", 2, synthetic_root) + ["MODEL.INIT_STAGE_CONFIG", "stage.yaml"],
    )
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


# ------------------------------------------------------------------------------- fault injection
def _start(extra_args, overrides, log_path, env=None):
    """Start a training run in its own process group, its output going to `log_path`."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, DRIVER, "--config-file", BASE_CONFIG, *extra_args, *overrides],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _wait_for(proc, log_path, text, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path) as f:
            if text in f.read():
                return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(log_path) as f:
        tail = f.read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"run ended (exit {proc.poll()}) or timed out before printing {text!r}:\n{tail}")


def _kill(proc):
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the process and anything it started
    proc.wait()


def _temporary_files(output_dir):
    return [n for n in os.listdir(output_dir) if n.endswith(".tmp")]


def _checkpoint_iterations(output_dir):
    import torch

    return {
        n: torch.load(os.path.join(output_dir, n), map_location="cpu")["iteration"]
        for n in os.listdir(output_dir)
        if n.startswith("model_") and n.endswith(".pth")
    }


def test_killed_runs_resume_from_the_newest_complete_checkpoint(synthetic_root, tmp_path):
    """kill -9 during a checkpoint write, then at a random moment, then damage the newest
    checkpoint:
    each --resume continues from the newest checkpoint that loads, and no temporary file is left."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = str(tmp_path / "run")
    overrides = _overrides(out, 120, synthetic_root) + ["DATASETS.TEST", "()"]

    # 1. killed while writing model_0000005.pth (iteration 5): half of it is in a temporary file
    log1 = str(tmp_path / "run1.log")
    proc = _start([], overrides, log1, env={"VIS_ZOO_TEST_PAUSE_WRITING": "model_0000005"})
    _wait_for(proc, log1, "PAUSED WRITING model_0000005")
    _kill(proc)
    [partial] = _temporary_files(out)
    assert partial.startswith(".model_0000005.pth.")
    assert open(os.path.join(out, "last_checkpoint")).read() == "model_0000003.pth"

    # 2. resumed from iteration 3 (the write of iteration 5 never completed), then killed at a
    # random
    # moment; the start-up removed the killed write's temporary file
    log2 = str(tmp_path / "run2.log")
    proc = _start(["--resume"], overrides, log2)
    _wait_for(proc, log2, "Starting training from iteration 4")
    assert partial not in os.listdir(out)
    delay = random.Random(20240).uniform(0.2, 1.5)
    time.sleep(delay)
    _kill(proc)
    iterations = _checkpoint_iterations(out)  # every checkpoint on disk is complete
    assert all(it == int(n[len("model_") : -len(".pth")]) for n, it in iterations.items()), (
        iterations
    )
    last = open(os.path.join(out, "last_checkpoint")).read()
    # last_checkpoint names the newest checkpoint, or the one before it when the kill fell between
    # the rename of a new checkpoint and the update of last_checkpoint (both files complete).
    newest_first = sorted(iterations.values(), reverse=True)
    assert iterations[last] in newest_first[:2], (delay, last, iterations)

    # 3. the newest checkpoint damaged (as by an interrupted copy): two processes resume from the
    # one
    # before it, and finish the schedule
    with open(os.path.join(out, last), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(out, last)) // 2)
    del iterations[last]
    previous = max(iterations, key=iterations.get)
    port = 20000 + (os.getpid() + 11) % 20000
    log3 = _run(["--resume", "--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{port}"], overrides)
    assert f"Starting training from iteration {iterations[previous] + 1}" in log3, (
        delay,
        last,
        previous,
    )
    resumed = [line for line in log3.splitlines() if "Resumed from" in line]
    assert (
        resumed
        and os.path.join(out, previous) in resumed[0]
        and os.path.join(out, last) in resumed[0]
    )
    assert _final_iteration(out) == 119
    assert _temporary_files(out) == []
    metrics = _metrics(out)  # every line parses: kills never cut a line
    assert metrics[-1]["iteration"] == 119
    loss_steps = set()
    for name in os.listdir(out):  # one event file per run that got to log; each reads to its end
        if name.startswith("events.out.tfevents"):
            events = list(EventFileLoader(os.path.join(out, name)).Load())
            assert events, name
            loss_steps |= {e.step for e in events for v in e.summary.value if v.tag == "total_loss"}
    assert 119 in loss_steps


def _truncated_copy(source, target):
    with open(source, "rb") as f:
        data = f.read()
    with open(target, "wb") as f:
        f.write(data[: len(data) // 3])
    return len(data) // 3


def test_truncated_model_weights_name_the_file(synthetic_root, tmp_path):
    import torch

    from tests.engine import run_minimal_training
    from vis_zoo.engine.checkpoint import DamagedCheckpointError

    weights = str(tmp_path / "weights.pth")
    torch.save(
        {"model": {"head.weight": torch.zeros(2, 16, 1, 1)}, "iteration": 3},
        str(tmp_path / "full.pth"),
    )
    size = _truncated_copy(str(tmp_path / "full.pth"), weights)
    for mode in (["--eval-only"], []):
        args = run_minimal_training.train_net.build_argument_parser().parse_args(
            [
                "--config-file",
                BASE_CONFIG,
                *mode,
                *_overrides(str(tmp_path / "out"), 2, synthetic_root),
                "MODEL.WEIGHTS",
                weights,
            ]
        )
        with pytest.raises(
            DamagedCheckpointError, match=f"{weights} \\({size:,} bytes\\).*damaged or incomplete"
        ):
            run_minimal_training.train_net.main(args)
