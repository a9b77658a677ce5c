"""Shared by the tests of vis_zoo/zoo/ and of tools/benchmark.py: a results row, a finished training
run as tools/train_net.py leaves it, the synthetic IFC config."""

import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IFC_SYNTHETIC = os.path.join(REPO, "configs", "ifc", "synthetic_R18.yaml")


def make_row(key, method, config, **extra):
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


D2_SESSION = (
    "[11/25 09:59:58 detectron2]: Command line arguments: Namespace(config_file='x.yaml')\n"
)
D2_LOG = (
    D2_SESSION
    + """\
[11/25 10:00:01 d2.engine.train_loop]: Starting training from iteration 0
[11/25 10:05:00 d2.utils.events]:  eta: 0:00:00  iter: 39  total_loss: 1.2  time: 0.4900
[11/25 10:05:01 d2.engine.hooks]: Overall training speed: 35 iterations in 0:00:17 (0.4957 s / it)
[11/25 10:05:01 d2.engine.hooks]: Total training time: {total} (0:00:03 on hooks)
[11/25 10:05:09 d2.evaluation.testing]: copypaste: Task: segm
"""
)


def fake_run(run_dir, *, total="0:04:10", metrics=True, log=True, arch="IFC", max_iter=40):
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
        (run_dir / "log.txt").write_text(D2_LOG.format(total=total))
    (run_dir / "config.yaml").write_text(
        f"MODEL:\n  META_ARCHITECTURE: {arch}\nSOLVER:\n  MAX_ITER: {max_iter}\n"
        "DATASETS:\n  TEST:\n  - synthetic_vis_val\n"
    )
    return str(run_dir)
