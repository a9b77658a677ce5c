#!/usr/bin/env python
"""Time the vectorised YouTube-VIS metric against the straightforward per-pair loop version.

    python tools/benchmark_evaluator.py [--videos 300 --tracks 100 --frames 40 --size 64] [--skip-loop]

Builds a synthetic GT (up to --gt-per-video tracks per video) and results (--tracks predicted tracks
per video, --frames frames, --size x --size pixels), scores it with both implementations in the same
run, checks that they agree (max |difference| over the 12 numbers and the precision/recall arrays),
and prints a table of wall-clock times.
"""
import argparse
import sys
import time

import numpy as np

from vis_zoo.evaluation import evaluate_ytvis, evaluate_ytvis_loop
from vis_zoo.evaluation.synthetic import make_random_ytvis


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--tracks", type=int, default=100, help="predicted tracks per video")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=64, help="frame height and width")
    parser.add_argument("--categories", type=int, default=40)
    parser.add_argument("--gt-per-video", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-loop", action="store_true", help="time only the vectorised version")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    gt, results = make_random_ytvis(
        seed=args.seed, num_videos=args.videos, num_categories=args.categories,
        num_frames=(args.frames, args.frames), frame_size=(args.size, args.size),
        max_gt_per_video=args.gt_per_video, preds_per_video=args.tracks,
        large_video_every=None, formats=False,
    )
    build_s = time.perf_counter() - t0
    print(f"synthetic data: {args.videos} videos x {args.tracks} predicted tracks x {args.frames} frames "
          f"({args.size}x{args.size}), {len(gt['annotations'])} GT tracks, {args.categories} categories; "
          f"built in {build_s:.1f} s", flush=True)

    t0 = time.perf_counter()
    fast = evaluate_ytvis(gt, results)
    fast_s = time.perf_counter() - t0
    rows = [("vectorised (evaluate_ytvis)", fast_s, 1.0)]
    print(f"vectorised: {fast_s:.2f} s", flush=True)
    agree = None
    if not args.skip_loop:
        t0 = time.perf_counter()
        slow = evaluate_ytvis_loop(gt, results)
        slow_s = time.perf_counter() - t0
        rows.append(("per-pair loop (evaluate_ytvis_loop)", slow_s, slow_s / fast_s))
        diff = max(
            np.abs(np.array(list(fast.stats.values())) - np.array(list(slow.stats.values()))).max(),
            np.abs(fast.precision - slow.precision).max(),
            np.abs(fast.recall - slow.recall).max(),
        )
        agree = diff <= 1e-9
    print()
    print(f"| {'implementation':<36} | {'seconds':>8} | {'slower by':>9} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 11}|")
    for name, sec, ratio in rows:
        print(f"| {name:<36} | {sec:8.2f} | {ratio:8.1f}x |")
    print()
    keys = ("AP", "AP50", "AP75", "AR1", "AR10")
    print("/".join(keys) + " = " + "/".join(f"{100 * fast.stats[k]:.2f}" for k in keys))
    if agree is not None:
        print(f"implementations agree: {agree} (max |diff| = {diff:.3g})")
        return 0 if agree else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
