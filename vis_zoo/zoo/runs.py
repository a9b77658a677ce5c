"""Training runs of the accuracy stage: start one, or read a finished one.

`run_accuracy` trains and evaluates a config with a training script (tools/train_net.py, passed in
by the caller) in a subprocess. `accuracy_from_run` reads the same numbers from a finished run's
folder without training: AP/AP50/AP75/AR1/AR10 from detectron2's metrics.json
(`parse_train_metrics`), the training time from its log.txt (`parse_train_log`) and the schedule
from its config.yaml.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

ACCURACY_KEYS = ("AP", "AP50", "AP75", "AR1", "AR10")

__all__ = [
    "ACCURACY_KEYS",
    "accuracy_from_run",
    "accuracy_from_runs",
    "parse_train_log",
    "parse_train_metrics",
    "run_accuracy",
]


def parse_train_metrics(metrics_path: str) -> Dict[str, object]:
    """AP, AP50, AP75, AR1, AR10 (percent) of the last evaluation in a detectron2 metrics.json, and
    the median logged seconds per training iteration ("time"). Raises ValueError naming the file."""
    if not os.path.isfile(metrics_path):
        raise ValueError(f"no metrics file {metrics_path!r} (training did not write one)")
    last_eval, times, iteration = None, [], None
    with open(metrics_path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{metrics_path}: line {n} is not JSON") from None
            if "segm/AP" in record:
                last_eval = record
            if "time" in record:
                times.append(float(record["time"]))
            iteration = record.get("iteration", iteration)
    if last_eval is None:
        raise ValueError(f"{metrics_path}: no evaluation record (no 'segm/AP' key)")
    out = {k: float(last_eval.get(f"segm/{k}", float("nan"))) for k in ACCURACY_KEYS}
    out["eval_iteration"] = last_eval.get("iteration")
    out["last_iteration"] = iteration
    if times:
        out["schedule_s_per_iter"] = statistics.median(times)
    return out


# detectron2's hooks.IterationTimer.after_train writes these two lines at the end of training
# (log.txt):
# "Overall training speed: 1195 iterations in 0:09:58 (0.5004 s / it)"   (iterations after 5 warm-up
#                                                                         ones)
# "Total training time: 0:10:40 (0:00:42 on hooks)"                       (hooks = checkpoints,
#                                                                          periodic evals)
# Durations are str(datetime.timedelta), so "1 day, 2:03:04" past 24 h.
_DURATION = r"(?:(\d+) days?, )?(\d+):(\d{2}):(\d{2})"
_TOTAL_TIME_RE = re.compile(r"Total training time: " + _DURATION)
_SESSION_START = "Command line arguments: "  # detectron2's default_setup logs it once per process
_SPEED_RE = re.compile(r"Overall training speed: (\d+) iterations in .*?\(([0-9.]+) s / it\)")


def parse_train_log(log_path: str) -> Dict[str, object]:
    """Training wall time from a detectron2 log.txt: "train_s" (seconds, the sum of the "Total
    training time" lines of the last process, i.e. after the last "Command line arguments" line: a
    resumed run that appended to the log counts its last process, a run with an initialisation stage
    (MODEL.INIT_STAGE_CONFIG) both stages; it excludes the final evaluation, which EvalHook runs
    after IterationTimer has logged), and "log_s_per_iter" / "log_timed_iters" from the last
    "Overall training speed" line when present. Raises ValueError naming the file when it is missing
    or has no "Total training time" line (training did not finish)."""
    if not os.path.isfile(log_path):
        raise ValueError(f"no training log {log_path!r}")
    total, speed = None, None
    with open(log_path, errors="replace") as f:
        for line in f:
            if (
                _SESSION_START in line
            ):  # a new process (e.g. a resumed run): count only the last one
                total, speed = None, None
            m = _TOTAL_TIME_RE.search(line)
            if m:
                days, h, mi, sec = (int(g or 0) for g in m.groups())
                total = (total or 0.0) + float(((days * 24 + h) * 60 + mi) * 60 + sec)
            m = _SPEED_RE.search(line)
            if m:
                speed = (int(m.group(1)), float(m.group(2)))
    if total is None:
        raise ValueError(
            f"{log_path}: no 'Total training time' line (detectron2 writes it when training "
            "finishes; was the run stopped early?)"
        )
    out: Dict[str, object] = {"train_s": total}
    if speed is not None:
        out["log_timed_iters"], out["log_s_per_iter"] = speed
    return out


def _read_run_config(cfg_path: str) -> Dict[str, object]:
    """A run's config.yaml as a dict ({} when the file is absent); ValueError naming it when
    unreadable."""
    if not os.path.isfile(cfg_path):
        return {}
    import yaml

    try:
        with open(cfg_path) as f:
            return yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{cfg_path}: not readable YAML ({str(e)[:200]})") from None


def accuracy_from_run(run_dir: str, root: Optional[str] = None) -> Dict[str, object]:
    """The accuracy entry of a row, read from a finished `tools/train_net.py` run (nothing is
    trained).

    AP/AP50/AP75/AR1/AR10 from RUN_DIR/metrics.json (`parse_train_metrics`), "wall_s" = the log's
    training time (`parse_train_log` on RUN_DIR/log.txt; without the final evaluation, so
    "wall_includes_final_eval" is False), "source" = the run dir (relative to `root`, default the
    working directory, when inside it), and from RUN_DIR/config.yaml (written by detectron2's
    default_setup) when present: "max_iter" (SOLVER.MAX_ITER of the run), "meta_architecture" and
    "dataset" (DATASETS.TEST[0]); "init_stage_max_iter" from RUN_DIR/init_stage/config.yaml when the
    run had an init stage. Raises ValueError naming the missing or unreadable file."""
    if not os.path.isdir(run_dir):
        raise ValueError(f"run directory {run_dir!r} does not exist")
    out = parse_train_metrics(os.path.join(run_dir, "metrics.json"))
    log = parse_train_log(os.path.join(run_dir, "log.txt"))
    out.update(wall_s=log.pop("train_s"), wall_includes_final_eval=False, **log)
    cfg = _read_run_config(os.path.join(run_dir, "config.yaml"))
    solver, model, datasets = (cfg.get(k) or {} for k in ("SOLVER", "MODEL", "DATASETS"))
    if "MAX_ITER" in solver:
        out["max_iter"] = int(solver["MAX_ITER"])
    if model.get("META_ARCHITECTURE"):
        out["meta_architecture"] = model["META_ARCHITECTURE"]
    if datasets.get("TEST"):
        out["dataset"] = list(datasets["TEST"])[0]
    from vis_zoo.engine.init_stage import (
        INIT_STAGE_DIR,
    )  # where MODEL.INIT_STAGE_CONFIG's stage ran

    stage_solver = (
        _read_run_config(os.path.join(run_dir, INIT_STAGE_DIR, "config.yaml")).get("SOLVER") or {}
    )
    if "MAX_ITER" in stage_solver:
        out["init_stage_max_iter"] = int(stage_solver["MAX_ITER"])
    path, root = os.path.abspath(run_dir), os.path.abspath(root or os.getcwd())
    out["source"] = os.path.relpath(path, root) if path.startswith(root + os.sep) else path
    return out


def accuracy_from_runs(
    sources: Dict[str, str], root: Optional[str] = None
) -> Dict[str, Dict[str, object]]:
    """`accuracy_from_run` for each {row key: run dir}; a failure is a ValueError naming the key."""
    out = {}
    for key, run_dir in sources.items():
        try:
            out[key] = accuracy_from_run(run_dir, root)
        except ValueError as e:
            raise ValueError(f"--accuracy-from {key}={run_dir}: {e}") from None
    return out


def run_accuracy(
    config_file: str,
    output_dir: str,
    *,
    device: str,
    threads: int,
    opts: Sequence[str] = (),
    timeout_s: float = 24 * 3600,
    train_script: Optional[str] = None,
    cwd: Optional[str] = None,
) -> Dict[str, object]:
    """Train + evaluate one config in a subprocess; metrics and wall time.

    `train_script` is the training entry point (the repository's tools/train_net.py: it takes
    `--config-file CFG` and `KEY VALUE` overrides and writes OUTPUT_DIR/metrics.json)."""
    if not train_script:
        raise ValueError("run_accuracy needs train_script (the path of tools/train_net.py)")
    script = train_script
    os.makedirs(output_dir, exist_ok=True)
    metrics = os.path.join(output_dir, "metrics.json")
    if os.path.exists(metrics):
        os.remove(metrics)  # a stale file from an earlier run must not be read as this run's result
    cmd = [
        sys.executable,
        script,
        "--config-file",
        config_file,
        "OUTPUT_DIR",
        output_dir,
        "MODEL.DEVICE",
        device,
        *opts,
    ]
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONWARNINGS="ignore",
    )
    start = time.perf_counter()
    log_path = os.path.join(output_dir, "benchmark_train_log.txt")
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, cwd=cwd
            )
    except subprocess.TimeoutExpired:
        return {"error": f"training timed out after {timeout_s:.0f} s (log: {log_path})"}
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read().strip().splitlines()[-3:]
        return {
            "error": f"train_net.py exit code {proc.returncode}: {' | '.join(tail)[-400:]}",
            "wall_s": wall,
        }
    try:
        result = parse_train_metrics(metrics)
    except ValueError as e:
        return {"error": str(e), "wall_s": wall}
    result.update({"wall_s": wall, "train_opts": list(opts)})
    return result
