#!/usr/bin/env python
"""Time long-video inference with and without the allocator trimming, side by side in one process.

    python tools/benchmark_trim.py --config-file configs/ifc/ytvis19_R50.yaml --frames 60 --rounds 4

The inference loops hand freed heap pages back to the system (`vis_zoo.utils.allocator`); this
tool measures what that costs. One model (random weights, one torch thread by default) runs the
same random video of T frames at H x W, alternating "trim" and "no trim" calls (the order swapped
every round, after one warm-up call); "no trim" replaces `release_freed_memory` by a no-op. Prints
the median and every time per mode.
"""

import argparse
import statistics
import time

import torch

import vis_zoo.utils.allocator as allocator
from vis_zoo.zoo.speed import _build_eval_model, random_video


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", type=int, nargs=2, default=[180, 320], metavar=("H", "W"))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    height, width = args.size
    _, model, _ = _build_eval_model(
        args.config_file, ["MODEL.DEVICE", "cpu", *args.opts], args.threads, 0
    )
    real = allocator.release_freed_memory
    times = {"trim": [], "no trim": []}
    video = random_video(args.frames, height, width, seed=1, lazy=True)
    try:
        with torch.no_grad():
            model([random_video(4, height, width, lazy=True)])  # warm-up
            for r in range(args.rounds):
                for mode in ("trim", "no trim") if r % 2 == 0 else ("no trim", "trim"):
                    allocator.release_freed_memory = real if mode == "trim" else (lambda: False)
                    start = time.perf_counter()
                    model([video])
                    times[mode].append(time.perf_counter() - start)
    finally:
        allocator.release_freed_memory = real
    for mode, values in times.items():
        print(
            f"{args.config_file}, T={args.frames}, {height}x{width}, {mode}: median "
            f"{statistics.median(values):.2f} s {[round(v, 2) for v in values]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
