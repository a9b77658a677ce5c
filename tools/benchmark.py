#!/usr/bin/env python
"""Benchmark every method of the model zoo and regenerate the comparison table in MODEL_ZOO.md.

    python tools/benchmark.py                       # every
    configs/<method>/{synthetic_R18,ytvis19_R50}.yaml
    python tools/benchmark.py --methods ifc         # rerun one method: only its rows change
    python tools/benchmark.py --stages speed max_frames --methods vita vistr
    python tools/benchmark.py --table-only          # redraw MODEL_ZOO.md and the plots from the
    results file
    python tools/benchmark.py --quick               # smoke run, minutes (writes to output/)
    python tools/benchmark.py --stages long_video --config-names ytvis19_R50   # hours
    python tools/benchmark.py --table-only --accuracy-from ifc/synthetic_R18=output/ifc   # accuracy
    of a finished run
    python tools/benchmark.py --methods vita --stages params speed --train-data JSON FRAMES

--train-data/--test-data JSON FRAMES (YouTube-VIS format) and trailing KEY VALUE overrides apply to
every config, as in tools/train_net.py; the accuracy stage stays on the synthetic validation split
(the
table's accuracy column), so it is skipped for another test set.

Per config (one row): parameters, GFLOPs per frame (fvcore), inference ms/frame and FPS at T frames,
peak memory, the largest T processed as one window within --budget-gb, training s/iter, and AP /
AP50 /
AP75 / AR1 / AR10 on the synthetic validation split after the config's own schedule (synthetic
configs
only) with the training wall time, or read from a finished training run with --accuracy-from. Every
measurement runs in a fresh process; a config that fails to build is an error row. How each number
is
measured: docs/benchmarking.md and vis_zoo/zoo/benchmark.py.

Writes the results file (--results, JSON, one row per config, merged into what is there), the table
between the generated-block markers of MODEL_ZOO.md, and two plots (--plots-dir): peak memory and
time
versus T, and AP versus training time. Methods are discovered from the config folders, so a new
method
appears with no change here. A full CPU run takes hours (mostly the accuracy trainings); run it on
an
otherwise idle machine, or select --methods / --stages.
"""

import argparse
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    import torch

    from vis_zoo.engine.cli import add_config_arguments
    from vis_zoo.engine.threads import cpu_threads
    from vis_zoo.zoo.benchmark import DEFAULT_CONFIG_NAMES, QUICK_CONFIG_NAMES, STAGES

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="method folders under --config-root (default: all)",
    )
    p.add_argument(
        "--config-names",
        nargs="+",
        default=None,
        help="config file names (without .yaml) benchmarked for every method "
        f"(default {' '.join(DEFAULT_CONFIG_NAMES)}; "
        f"--quick: {' '.join(QUICK_CONFIG_NAMES)})",
    )
    p.add_argument("--config-root", default=os.path.join(REPO_ROOT, "configs"))
    p.add_argument(
        "--stages",
        nargs="+",
        default=None,
        choices=STAGES,
        help="measurements to run (default: all but long_video, which runs only when "
        "named; --quick: also without max_frames and accuracy)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=cpu_threads(),
        help="torch CPU threads (default: as training, vis_zoo/engine/threads.py)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="T for the table's time, FPS and peak memory (default 8; CUDA 36)",
    )
    p.add_argument(
        "--flops-frames",
        type=int,
        default=None,
        help="T of the GFLOPs count (default 2; CUDA 8): fvcore's tracer keeps every "
        "intermediate tensor, ~2 GB per frame for an R-50 at 360x640",
    )
    p.add_argument(
        "--curve-frames",
        type=int,
        nargs="+",
        default=None,
        help="T values of the memory/time plot (default 2 4 8 16; CUDA 6 12 24 36 72)",
    )
    p.add_argument(
        "--long-video-points",
        nargs="+",
        default=None,
        metavar="HxWxT",
        type=parse_long_video_point,
        help="(height, width, frames) points of the long_video stage, e.g. 180x320x1000 "
        "(default 180x320 at T = 100, 1,000, 10,000 and 360x640 at T = 100, 1,000)",
    )
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="input size for every config (default: each config's test size of a 16:9 video)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (median), default 3")
    p.add_argument(
        "--budget-gb",
        type=float,
        default=None,
        help="memory budget of the max-T search (CPU 4, CUDA 16)",
    )
    p.add_argument("--max-frames-start", type=int, default=None)
    p.add_argument(
        "--max-frames-cap", type=int, default=None, help="largest T tried (CPU 64, CUDA 2048)"
    )
    p.add_argument(
        "--mem-limit-gb",
        type=float,
        default=None,
        help="any measuring process on CPU is stopped above this resident memory (default 12)",
    )
    p.add_argument(
        "--train-iters", type=int, default=None, help="timed training iterations (default 3)"
    )
    p.add_argument(
        "--train-batch", type=int, default=None, help="videos per training iteration (default 1)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (a couple of minutes): the synthetic_R18 configs, tiny sizes, "
        "one repeat, T = 2, one training step; no max-T search, no accuracy "
        "training; tables and plots marked as a smoke run",
    )
    p.add_argument(
        "--results", default=None, help="results JSON (default model_zoo/benchmark_results.json)"
    )
    p.add_argument(
        "--model-zoo-md", default=None, help="markdown file to update (default MODEL_ZOO.md)"
    )
    p.add_argument("--plots-dir", default=None, help="where the PNG plots go (default model_zoo/)")
    p.add_argument(
        "--work-dir",
        default=None,
        help="training outputs of the accuracy stage (default output/benchmark_runs)",
    )
    p.add_argument(
        "--accuracy-from",
        action="append",
        default=[],
        metavar="KEY=RUN_DIR",
        help="fill row KEY's accuracy (e.g. ifc/synthetic_R18) from a finished tools/train_net.py "
        "run: AP... from RUN_DIR/metrics.json, training time from RUN_DIR/log.txt; that row is "
        "never retrained; repeatable; works with --table-only",
    )
    p.add_argument("--table-only", action="store_true", help="only regenerate the table and plots")
    p.add_argument("--no-progress", action="store_true")
    # --train-data/--test-data JSON FRAMES and KEY VALUE overrides (trailing or after --opts), for
    # every config
    add_config_arguments(p, config_file=False)
    return p.parse_args(argv)


def build_settings(args):
    from vis_zoo.zoo.benchmark import BenchmarkSettings

    cuda = args.device.startswith("cuda")
    given = {
        k: v
        for k, v in {
            "frames": args.frames,
            "flops_frames": args.flops_frames,
            "repeats": args.repeats,
            "budget_gb": args.budget_gb,
            "max_frames_start": args.max_frames_start,
            "max_frames_cap": args.max_frames_cap,
            "train_iters": args.train_iters,
            "train_batch": args.train_batch,
            "mem_limit_gb": args.mem_limit_gb,
            "curve_frames": tuple(args.curve_frames) if args.curve_frames else None,
            "size": tuple(args.size) if args.size else None,
            "long_video_points": tuple(args.long_video_points) if args.long_video_points else None,
        }.items()
        if v is not None
    }
    base = {"device": args.device, "threads": args.threads}
    if args.quick:
        return BenchmarkSettings.quick_settings(**base, **given)
    if cuda:  # a GPU holds far longer videos: measure where the methods differ
        base.update(
            frames=36,
            flops_frames=8,
            curve_frames=(6, 12, 24, 36, 72),
            budget_gb=16.0,
            max_frames_start=36,
            max_frames_cap=2048,
            mem_limit_gb=64.0,
        )
    base.update(given)
    return BenchmarkSettings(**base)


def parse_long_video_point(text):
    """ "180x320x1000" -> (180, 320, 1000); a malformed point is a usage error."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTHxFRAMES with positive integers, got {text!r}"
        )
    return tuple(int(p) for p in parts)


def parse_accuracy_from(items):
    """["KEY=RUN_DIR", ...] -> {KEY: RUN_DIR} (ValueError on a malformed or repeated KEY)."""
    out = {}
    for item in items:
        key, sep, run_dir = item.partition("=")
        key, run_dir = key.strip(), run_dir.strip()
        if not sep or not key or not run_dir:
            raise ValueError(
                f"--accuracy-from {item!r}: expected KEY=RUN_DIR, e.g. ifc/synthetic_R18=output/ifc"
            )
        if key in out:
            raise ValueError(f"--accuracy-from: row {key!r} given twice")
        out[key] = run_dir
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from vis_zoo.zoo.benchmark import (
        DEFAULT_CONFIG_NAMES,
        QUICK_CONFIG_NAMES,
        OPT_IN_STAGES,
        QUICK_SKIPPED_STAGES,
        STAGES,
        accuracy_from_runs,
        apply_accuracy_from,
        discover_configs,
        load_results,
        run_benchmark,
        save_results,
    )
    from vis_zoo.zoo.table import (
        plot_ap_vs_train_time,
        plot_long_video,
        plot_memory_time,
        update_model_zoo,
    )

    out_default = os.path.join(REPO_ROOT, "output", "benchmark_quick") if args.quick else None
    results = args.results or os.path.join(
        out_default or os.path.join(REPO_ROOT, "model_zoo"), "benchmark_results.json"
    )
    md_path = args.model_zoo_md or (
        os.path.join(out_default, "MODEL_ZOO.md")
        if out_default
        else os.path.join(REPO_ROOT, "MODEL_ZOO.md")
    )
    plots_dir = args.plots_dir or out_default or os.path.join(REPO_ROOT, "model_zoo")
    work_dir = args.work_dir or os.path.join(
        out_default or os.path.join(REPO_ROOT, "output"), "benchmark_runs"
    )

    def regenerate(data) -> None:
        plots = [
            plot_memory_time(data, os.path.join(plots_dir, "memory_time_vs_frames.png")),
            plot_ap_vs_train_time(data, os.path.join(plots_dir, "ap_vs_train_time.png")),
            plot_long_video(data, os.path.join(plots_dir, "long_video_memory.png")),
        ]
        plots = [p for p in plots if p]
        update_model_zoo(md_path, data, REPO_ROOT, plots)

    try:  # read the finished runs first: a bad KEY=RUN_DIR fails before hours of benchmarking
        accuracy = accuracy_from_runs(parse_accuracy_from(args.accuracy_from), root=REPO_ROOT)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.table_only:
        from vis_zoo.engine.cli import config_overrides

        overrides = config_overrides(args, config_file="")
        settings = build_settings(args)
        skipped = (QUICK_SKIPPED_STAGES if args.quick else ()) + OPT_IN_STAGES
        stages = args.stages or [s for s in STAGES if s not in skipped]
        config_names = args.config_names or (
            QUICK_CONFIG_NAMES if args.quick else DEFAULT_CONFIG_NAMES
        )
        entries = discover_configs(args.config_root, config_names, args.methods)
        if not entries:
            print(f"no configs named {config_names} under {args.config_root}", file=sys.stderr)
            return 2
        known = set(load_results(results)["rows"]) | {e.key for e in entries}
        missing = sorted(set(accuracy) - known)
        if missing:
            print(
                f"error: --accuracy-from {missing[0]}: no row {missing[0]!r} in {results} and not "
                f"benchmarked now (rows: {sorted(known)})",
                file=sys.stderr,
            )
            return 2
        print(
            f"benchmarking {len(entries)} config(s) [{', '.join(e.key for e in entries)}], stages "
            f"{stages}, "
            f"device {settings.device}, {settings.threads} threads -> {results}",
            flush=True,
        )
        data = run_benchmark(
            entries,
            settings,
            results_path=results,
            stages=stages,
            work_dir=work_dir,
            opts=overrides,
            progress=not args.no_progress,
            on_row_done=regenerate,
            accuracy_from=accuracy,
            root=REPO_ROOT,
            train_script=os.path.join(REPO_ROOT, "tools", "train_net.py"),
        )
    else:
        data = load_results(results)
        if accuracy:
            try:
                apply_accuracy_from(data, accuracy)
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            save_results(results, data)
    regenerate(data)
    failed = [k for k, r in data["rows"].items() if r.get("build_error")]
    print(
        f"wrote {results} and {md_path}" + (f"; rows with build errors: {failed}" if failed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
