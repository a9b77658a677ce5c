#!/usr/bin/env python
"""Inference speed and peak memory of a VIS Zoo model, one fresh process per video length.

    python tools/benchmark_speed.py --config-file configs/ifc/ytvis19_R50.yaml \
        --frames 5 10 20 40 --size 360 640 --threads 2

Random weights, random T-frame video at the given size, warm-up excluded, median of --repeats calls.
Prints a markdown table (frames/s, seconds per video, peak RSS). --reference T:FPS:GB ... adds
ratios against another implementation's numbers; --json writes all results. Timings depend on
machine load: the 1-minute load average at each measurement is printed too; --ratio-only gives
whole-inference / backbone time, interleaved in one process (load-robust).
"""

import argparse
import os
import sys
from dataclasses import asdict

from vis_zoo.utils.io import atomic_write_json
from vis_zoo.zoo.speed import format_speed_table, measure_speed_in_subprocess


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--frames", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--reference",
        nargs="*",
        default=[],
        metavar="T:FPS:GB",
        help="another implementation's numbers, e.g. 5:2.78:1.6 10:1.83:2.4",
    )
    parser.add_argument(
        "--with-backbone",
        action="store_true",
        help="also time the backbone alone at each T (same process conditions), and print the "
        "ratio model time / backbone time, which is less sensitive to machine load",
    )
    parser.add_argument(
        "--ratio-only",
        action="store_true",
        help="instead of the table: whole-inference time / backbone time, interleaved in one "
        "process per T (robust to machine load; compare with another implementation's "
        "backbone-fps / fps)",
    )
    parser.add_argument("--json", default="", help="write the results to this JSON file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)

    reference = {}
    for item in args.reference:
        t, fps, gb = item.split(":")
        reference[int(t)] = (float(fps), float(gb))
    # What every measurement below shares; only the video length T changes.
    height, width = args.size
    settings = dict(threads=args.threads, repeats=args.repeats, opts=args.opts)
    if args.ratio_only:
        from vis_zoo.zoo.speed import measure_model_vs_backbone

        ratios = []
        for t in args.frames:
            r = measure_model_vs_backbone(args.config_file, t, height, width, **settings)
            print(
                f"T={t}: backbone {[round(x, 2) for x in r['backbone_s']]} s, model "
                f"{[round(x, 2) for x in r['model_s']]} s, model/backbone = {r['ratio']:.2f}",
                flush=True,
            )
            ratios.append(r)
        if args.json:
            atomic_write_json(args.json, ratios)
        return 0

    results, backbone_results = [], []
    for t in args.frames:
        r = measure_speed_in_subprocess(args.config_file, t, height, width, **settings)
        print(
            f"T={t}: {r.fps:.2f} frames/s, {r.median_s:.2f} s/video (times "
            f"{[round(x, 2) for x in r.times_s]}), "
            f"peak {r.peak_rss_gb:.2f} GB, load avg {r.load_avg_1min:.2f}",
            flush=True,
        )
        results.append(r)
        if args.with_backbone:
            b = measure_speed_in_subprocess(
                args.config_file, t, height, width, mode="backbone", **settings
            )
            print(
                f"      backbone alone: {b.fps:.2f} frames/s -> model time / backbone time = "
                f"{r.median_s / b.median_s:.2f} (load avg {b.load_avg_1min:.2f})",
                flush=True,
            )
            backbone_results.append(b)
    print(
        f"\n{os.path.basename(args.config_file)}, {height}x{width}, {args.threads} "
        "threads, "
        f"device {results[0].device}\n"
    )
    print(format_speed_table(results, reference or None))
    if args.json:
        atomic_write_json(args.json, [asdict(r) for r in results + backbone_results])
    return 0


if __name__ == "__main__":
    sys.exit(main())
