"""The model-zoo benchmark: every method config measured the same way, results kept per row.

A row is one config (`configs/<method>/<name>.yaml`); methods are discovered from the folders, so a
method added later is benchmarked with no change here. Each measurement runs in a fresh process
(`vis_zoo.zoo.child`), so a method that fails to build (or crashes, or runs out of memory) becomes
an error in its row, and peak memory is that measurement's own. The stages:

"model"       config facts, parameters, GFLOPs per frame (`vis_zoo.zoo.stages.child_model`).
"speed"       inference time and peak memory versus T (`vis_zoo.zoo.speed`, one process per T;
              random weights and video, warm-up excluded, median of `repeats`, CUDA synchronised;
              peak resident memory on CPU, max_memory_allocated on CUDA). The table's ms/frame, FPS
              and peak memory are the point at T = `frames`.
"max_frames"  the largest T that one model call processes as a single window within `budget_gb`
              (`vis_zoo.zoo.stages.search_max_frames`; a method that rejects one window of T keeps
              its own, noted in the row); `max_frames_cap` bounds the search (">= cap").
"train_speed" training seconds per iteration on a random batch (`vis_zoo.zoo.stages.child_train`).
"long_video"  peak memory and ms per frame of one call on long videos, T = 100, 1,000, 10,000 at
              180x320 and T = 100, 1,000 at 360x640 (`vis_zoo.zoo.long_video`); hours on a CPU,
              so it runs only when named (--stages long_video).
"accuracy"    the training script on the config (its own schedule, in a subprocess), then AP, AP50,
              AP75, AR1, AR10 and the wall time (`vis_zoo.zoo.runs`); only for configs whose test
              datasets are synthetic (metadata key `synthetic_split`). A row given a finished run
              (`accuracy_from`) reads the same numbers from it instead, without training.

Modules: `child` (the process protocol), `stages` (what a child measures), `runs` (training runs
and their logs), `results` (the results file), `table` (MODEL_ZOO.md and the plots).
"""

import os
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .child import run_child
from .long_video import LONG_VIDEO_POINTS, QUICK_LONG_VIDEO_POINTS, measure_long_video
from .results import (
    apply_accuracy_from,
    load_results,
    machine_info,
    machine_string,
    now,
    save_results,
)
from .runs import (
    ACCURACY_KEYS,
    accuracy_from_run,
    accuracy_from_runs,
    parse_train_log,
    parse_train_metrics,
    run_accuracy,
)
from .stages import (
    config_facts,
    count_gflops_per_frame,
    default_input_size,
    processed_frames,
    random_training_batch,
    search_max_frames,
)
from .child import short_error

DEFAULT_CONFIG_NAMES = ("synthetic_R18", "ytvis19_R50")
# The smoke run (`tools/benchmark.py --quick`): the small configs only, and without the stages that
# take many processes (the max-T search) or a training run (accuracy), so that it takes minutes.
QUICK_CONFIG_NAMES = ("synthetic_R18",)
QUICK_SKIPPED_STAGES = ("max_frames", "accuracy")
STAGES = ("model", "speed", "max_frames", "train_speed", "long_video", "accuracy")
# Stages that run only when asked for by name (hours each).
OPT_IN_STAGES = ("long_video",)

__all__ = [
    "ACCURACY_KEYS",
    "BenchmarkEntry",
    "BenchmarkSettings",
    "DEFAULT_CONFIG_NAMES",
    "OPT_IN_STAGES",
    "STAGES",
    "accuracy_from_run",
    "accuracy_from_runs",
    "apply_accuracy_from",
    "config_facts",
    "count_gflops_per_frame",
    "default_input_size",
    "discover_configs",
    "machine_info",
    "machine_string",
    "load_results",
    "parse_train_log",
    "parse_train_metrics",
    "processed_frames",
    "random_training_batch",
    "run_accuracy",
    "run_benchmark",
    "run_child",
    "save_results",
    "search_max_frames",
]


# ------------------------------------------------------------------------------------------
# settings
@dataclass
class BenchmarkEntry:
    """One row: `key` = "<method>/<config name>"."""

    key: str
    method: str
    config_file: str  # absolute path


@dataclass
class BenchmarkSettings:
    device: str = "cpu"
    threads: int = 2
    frames: int = 8  # T of the table's time / FPS / peak memory
    flops_frames: int = 2  # T of the GFLOPs count (tracing memory grows with T, see above)
    curve_frames: Tuple[int, ...] = (2, 4, 8, 16)  # T of the memory/time-versus-frames plot
    size: Optional[Tuple[int, int]] = None  # (H, W); None = per config (see default_input_size)
    repeats: int = 3
    budget_gb: float = 4.0
    max_frames_start: int = 8
    max_frames_cap: int = 64
    mem_limit_gb: float = 12.0  # hard stop for any measuring process (protects the machine)
    train_iters: int = 3
    train_batch: int = 1
    accuracy_opts: Tuple[str, ...] = ()  # extra KEY VALUE overrides for the accuracy training run
    child_timeout_s: float = 3 * 3600
    quick: bool = False
    long_video_points: Tuple[Tuple[int, int, int], ...] = LONG_VIDEO_POINTS  # (H, W, T)

    @classmethod
    def quick_settings(cls, **overrides) -> "BenchmarkSettings":
        """Smoke-run settings: tiny sizes, one repeat, one training iteration, T = 2 (one inference
        process per row: the smoke run checks that every stage runs, in a couple of minutes)."""
        values = dict(
            frames=2,
            flops_frames=1,
            curve_frames=(2,),
            size=(64, 96),
            repeats=1,
            max_frames_start=2,
            max_frames_cap=2,
            train_iters=1,
            train_batch=1,
            child_timeout_s=600,
            quick=True,
            long_video_points=QUICK_LONG_VIDEO_POINTS,
            accuracy_opts=("SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1000000"),
        )
        values.update(overrides)
        return cls(**values)


def discover_configs(
    config_root: str,
    names: Sequence[str] = DEFAULT_CONFIG_NAMES,
    methods: Optional[Sequence[str]] = None,
) -> List[BenchmarkEntry]:
    """Every `<config_root>/<method>/<name>.yaml` that exists, method folders in sorted order.

    `methods` restricts to those folder names (an unknown name raises ValueError listing the known).
    """
    if not os.path.isdir(config_root):
        raise ValueError(f"config folder {config_root!r} does not exist")
    found = sorted(
        d for d in os.listdir(config_root) if os.path.isdir(os.path.join(config_root, d))
    )
    if methods:
        unknown = sorted(set(methods) - set(found))
        if unknown:
            raise ValueError(
                f"unknown method(s) {unknown}; config folders in {config_root}: {found}"
            )
        found = [m for m in found if m in set(methods)]
    entries = []
    for method in found:
        for name in names:
            stem = name[:-5] if name.endswith(".yaml") else name
            path = os.path.join(config_root, method, f"{stem}.yaml")
            if os.path.isfile(path):
                entries.append(BenchmarkEntry(f"{method}/{stem}", method, os.path.abspath(path)))
    return entries


def benchmark_entry(
    entry: BenchmarkEntry,
    settings: BenchmarkSettings,
    stages: Sequence[str],
    row: dict,
    work_dir: str,
    step: Callable[[str], None],
    opts: Sequence[str] = (),
    accuracy_from: Optional[Dict[str, dict]] = None,
    root: Optional[str] = None,
    train_script: Optional[str] = None,
) -> dict:
    """Run the requested stages of one row, updating `row` (a previous result, possibly empty).

    A row in `accuracy_from` (`accuracy_from_runs` output) takes its accuracy from that finished run
    instead of the accuracy stage's training. `root` (default: the working directory) is where the
    row's config path is relative to and where the measuring processes run; `train_script` is the
    training entry point of the accuracy stage (tools/train_net.py)."""
    root = os.path.abspath(root or os.getcwd())
    row.update(
        {
            "key": entry.key,
            "method": entry.method,
            "config": os.path.relpath(entry.config_file, root),
            "machine": machine_info(settings.device, settings.threads),
            "settings": {k: v for k, v in asdict(settings).items() if k != "accuracy_opts"},
            "updated": now(),
        }
    )
    # Which run measured each stage: a later run of some stages (e.g. train_speed on another day)
    # must not relabel the numbers the earlier run measured (the table tags each column group).
    stage_runs = row.setdefault("stage_runs", {})
    for stage in stages:
        stage_runs[stage] = {k: row[k] for k in ("machine", "settings", "updated")}
    row.setdefault("errors", {})
    for stage in stages:
        row["errors"].pop(stage, None)
    common = {
        "config_file": entry.config_file,
        "device": settings.device,
        "threads": settings.threads,
        "opts": list(opts),
        "mem_limit_gb": settings.mem_limit_gb,
    }

    # stage "model" always runs when its facts are missing: the other stages need the input size
    if "model" in stages or "facts" not in row:
        step(f"{entry.key}: build, params, GFLOPs")
        res = run_child(
            "model",
            dict(common, frames=settings.flops_frames, size=settings.size, flops="model" in stages),
            threads=settings.threads,
            timeout_s=settings.child_timeout_s,
            cwd=root,
        )
        if "error" in res:
            row["errors"]["model"] = res["error"]
            row["build_error"] = res["error"]
            return row
        row.pop("build_error", None)
        for stage_key, err in res.pop("errors", {}).items():
            row["errors"][stage_key] = err
        if "model" not in stages:  # only the facts were wanted
            res = {k: res[k] for k in ("facts", "size", "params_m", "trainable_params_m")}
        row.update(res)
    size = list(settings.size or row["facts"]["default_size"])
    row["size"] = size

    if "speed" in stages:
        from vis_zoo.zoo.speed import measure_speed_in_subprocess

        curve = []
        frames_list = sorted(set(settings.curve_frames) | {settings.frames})
        for t in frames_list:
            step(f"{entry.key}: inference T={t}")
            try:
                r = measure_speed_in_subprocess(
                    entry.config_file,
                    t,
                    size[0],
                    size[1],
                    threads=settings.threads,
                    repeats=settings.repeats,
                    opts=["MODEL.DEVICE", settings.device, *opts],
                    timeout=settings.child_timeout_s,
                )
                peak = r.peak_cuda_gb if r.peak_cuda_gb is not None else r.peak_rss_gb
                curve.append(
                    {
                        "frames": t,
                        "seconds": r.median_s,
                        "times_s": r.times_s,
                        "fps": r.fps,
                        "ms_per_frame": 1000 * r.median_s / t,
                        "peak_gb": peak,
                        "peak_rss_gb": r.peak_rss_gb,
                        "load_avg_1min": r.load_avg_1min,
                    }
                )
            except Exception as e:  # subprocess failure / timeout: keep the other points
                curve.append({"frames": t, "error": short_error(e)[-400:]})
        row["curve"] = curve
        main = next((p for p in curve if p["frames"] == settings.frames), None)
        row["speed"] = dict(main) if main else {"error": "no measurement"}
        if main and "error" in main:
            row["errors"]["speed"] = main["error"]

    if "max_frames" in stages:

        def probe(t: int) -> dict:
            step(f"{entry.key}: max frames, probe T={t}")
            return run_child(
                "probe",
                dict(common, frames=t, size=size, budget_gb=settings.budget_gb),
                threads=settings.threads,
                timeout_s=settings.child_timeout_s,
                cwd=root,
            )

        res = search_max_frames(probe, start=settings.max_frames_start, cap=settings.max_frames_cap)
        res.update({"budget_gb": settings.budget_gb, "cap": settings.max_frames_cap})
        row["max_frames"] = res
        if res["max_frames"] == 0 and res["probe_errors"]:
            row["errors"]["max_frames"] = res["probe_errors"][0]

    if "train_speed" in stages:
        step(f"{entry.key}: training s/iter")
        res = run_child(
            "train",
            dict(
                common,
                size=size,
                train_iters=settings.train_iters,
                train_batch=settings.train_batch,
            ),
            threads=settings.threads,
            timeout_s=settings.child_timeout_s,
            cwd=root,
        )
        for k in ("train_s_per_iter", "train_times_s", "train_batch", "train_frames", "train_size"):
            row.pop(k, None)
        if "error" in res:
            row["errors"]["train_speed"] = res["error"]
        else:
            row.update(res)

    if "long_video" in stages:
        row["long_video"] = measure_long_video(
            entry.config_file,
            settings.long_video_points,
            device=settings.device,
            threads=settings.threads,
            opts=opts,
            timeout_s=settings.child_timeout_s * 8,
            step=step,
        )
        failed = [p for p in row["long_video"]["points"] if "error" in p]
        if failed:
            row["errors"]["long_video"] = failed[0]["error"]

    if accuracy_from and entry.key in accuracy_from:
        apply_accuracy_from({"rows": {entry.key: row}}, {entry.key: accuracy_from[entry.key]})
    elif "accuracy" in stages:
        if not row["facts"].get("synthetic_test"):
            row["accuracy"] = {
                "skipped": "test set is not synthetic (needs its dataset; see the README)"
            }
        else:
            step(f"{entry.key}: train + evaluate (accuracy)")
            out_dir = os.path.join(work_dir, entry.key.replace("/", "__"))
            acc_opts = list(settings.accuracy_opts) + list(opts)
            res = run_accuracy(
                entry.config_file,
                out_dir,
                device=settings.device,
                threads=settings.threads,
                opts=acc_opts,
                timeout_s=settings.child_timeout_s * 8,
                train_script=train_script,
                cwd=root,
            )
            res["dataset"] = row["facts"]["test_datasets"][0]
            row["accuracy"] = res
            if "error" in res:
                row["errors"]["accuracy"] = res["error"]
    row["updated"] = now()
    return row


def count_steps(settings: BenchmarkSettings, stages: Sequence[str]) -> int:
    """Progress-bar steps per row (max-frames probes are estimated by the doubling count)."""
    n = 1 + ("train_speed" in stages)
    if "speed" in stages:
        n += len(set(settings.curve_frames) | {settings.frames})
    if "max_frames" in stages:
        t, probes = min(settings.max_frames_start, settings.max_frames_cap), 1
        while t < settings.max_frames_cap:
            t, probes = min(2 * t, settings.max_frames_cap), probes + 1
        n += probes
    if "accuracy" in stages:
        n += 1
    if "long_video" in stages:
        n += len(settings.long_video_points)
    return n


def run_benchmark(
    entries: Sequence[BenchmarkEntry],
    settings: BenchmarkSettings,
    *,
    results_path: str,
    stages: Sequence[str] = STAGES,
    work_dir: Optional[str] = None,
    opts: Sequence[str] = (),
    progress: bool = True,
    on_row_done: Optional[Callable[[dict], None]] = None,
    accuracy_from: Optional[Dict[str, dict]] = None,
    root: Optional[str] = None,
    train_script: Optional[str] = None,
) -> Dict[str, object]:
    """Benchmark every entry; each row is merged into the results file as soon as it is done (rows
    not
    benchmarked now are kept), so a partial rerun (a subset of methods or stages) updates only
    those.
    `accuracy_from` ({row key: `accuracy_from_run` output}): those rows' accuracy comes from a
    finished
    run (never retrained); keys that are not benchmarked now are filled into their existing rows.
    `root` and `train_script`: see `benchmark_entry`."""
    from tqdm import tqdm

    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    work_dir = work_dir or os.path.join(os.path.dirname(os.path.abspath(results_path)), "runs")
    data = load_results(results_path)
    total = len(entries) * count_steps(settings, stages)
    bar = tqdm(total=total, desc="benchmark", unit="step", disable=not progress, dynamic_ncols=True)

    def step(text: str) -> None:
        bar.set_description_str(text[:70])
        bar.update(1)

    for entry in entries:
        previous = dict(data["rows"].get(entry.key, {}))
        row = benchmark_entry(
            entry,
            settings,
            stages,
            previous,
            work_dir,
            step,
            opts,
            accuracy_from,
            root=root,
            train_script=train_script,
        )
        data = load_results(results_path)  # re-read: another run may have saved rows meanwhile
        data["rows"][entry.key] = row
        save_results(results_path, data)
        if on_row_done is not None:
            on_row_done(data)
    rest = {k: v for k, v in (accuracy_from or {}).items() if k not in {e.key for e in entries}}
    if rest:
        data = apply_accuracy_from(load_results(results_path), rest)
        save_results(results_path, data)
    bar.n = bar.total
    bar.close()
    return data
