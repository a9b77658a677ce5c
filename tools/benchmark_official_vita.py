#!/usr/bin/env python
"""Speed and peak memory of the OFFICIAL VITA code on CPU, for side-by-side comparisons with ours.

    python tools/benchmark_official_vita.py --official-root /path/to/official_vita --frames 10 40 \
        --threads 2 --repeats 2 TEST.DETECTIONS_PER_IMAGE 10

`--official-root` is a checkout of sukjunhwang/VITA with Mask2Former's `mask2former` package next to
its `vita` package (the layout of the official repository), whose deformable attention falls back to
the pure-PyTorch `ms_deform_attn_core_pytorch` when the CUDA extension is missing (Mask2Former's ops
files do since 2022). The official code is not part of VIS Zoo and is never imported by it.

Each T runs in a fresh process (`--child`), so the peak resident memory is that measurement's own.
The child builds the model from the official `configs/youtubevis_2019/vita_R50_bs8.yaml` (setup as
the official train_net_vita.py: deeplab, Mask2Former and VITA config functions, then the yaml) with
random weights, MODEL.DEVICE cpu and the given KEY VALUE overrides, makes one warm-up call on 2
frames, then `repeats` timed calls of `model([video])` under torch.no_grad() on T random uint8
frames at the given size — the same input and the same definitions (frames/s = T / median time; peak
RSS from `vis_zoo.zoo.memory.peak_rss_gb`, in GB of 2^30 bytes) as `tools/benchmark_speed.py` uses
for ours. Note that the official config leaves TEST.DETECTIONS_PER_IMAGE at detectron2's 100, while
VITA's paper setting (and our config) keep the top 10.
"""

import argparse
import json
import os
import statistics
import sys
import time


def _child(args) -> None:
    import torch

    sys.path.insert(0, os.path.abspath(args.official_root))
    torch.set_num_threads(args.threads)
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.projects.deeplab import add_deeplab_config
    from mask2former import add_maskformer2_config
    from vita import add_vita_config

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from vis_zoo.zoo.memory import peak_rss_gb
    from vis_zoo.zoo.speed import random_video

    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    add_vita_config(cfg)
    cfg.merge_from_file(
        args.config_file
        or os.path.join(args.official_root, "configs", "youtubevis_2019", "vita_R50_bs8.yaml")
    )
    cfg.merge_from_list(["MODEL.DEVICE", "cpu"] + list(args.opts))
    cfg.freeze()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    frames = args.frames[0]
    video = random_video(frames, args.size[0], args.size[1])
    with torch.no_grad():
        model([random_video(2, args.size[0], args.size[1])])
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model([video])
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(
        json.dumps(
            {
                "frames": frames,
                "fps": frames / median,
                "median_s": median,
                "times_s": times,
                "peak_rss_gb": peak_rss_gb(),
                "detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
                "threads": args.threads,
                "load_avg_1min": os.getloadavg()[0],
            }
        )
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--official-root",
        required=True,
        help="checkout holding the official `vita` and `mask2former`",
    )
    p.add_argument(
        "--config-file",
        default="",
        help="default: <root>/configs/youtubevis_2019/vita_R50_bs8.yaml",
    )
    p.add_argument("--frames", type=int, nargs="+", default=[10, 40])
    p.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of the official config"
    )
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.join(args.official_root, "vita")):
        p.error(f"--official-root {args.official_root}: no `vita` package there")
    if args.child:
        _child(args)
        return 0
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from vis_zoo.zoo.speed import official_child_command, run_measurement_child

    for frames in args.frames:
        cmd = official_child_command(
            __file__, args.official_root, frames, args.size, args.threads, args.repeats
        ) + (["--config-file", args.config_file] if args.config_file else [])
        try:
            r = run_measurement_child(
                cmd + list(args.opts), args.threads, what=f"official VITA, T={frames}"
            )
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        print(
            f"official T={frames}: {r['fps']:.3f} frames/s, {r['median_s']:.2f} s/video, peak "
            f"{r['peak_rss_gb']:.2f} GB, top-{r['detections_per_image']}, load avg "
            f"{r['load_avg_1min']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
