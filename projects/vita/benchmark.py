"""Inference speed and peak memory of VITA on long inputs (not a test; numbers depend on the machine).

    python -m vis_zoo_projects.vita.benchmark --frames 5 10 20 40 --size 360 640 --threads 2
    python -m vis_zoo_projects.vita.benchmark --max-frames --budget-gb 8 --size 360 640
    python -m vis_zoo_projects.vita.benchmark --frames 10 --official-style   # official-cost emulation

Each measurement runs in a fresh subprocess (so peak RSS is that run's own): the R-50 model of
configs/vita/ytvis19_R50.yaml with random weights, a video of T random frames at the given size, one
warm-up video of 2 frames, then the timed forward (inference + post-processing to the output
contract). Reported: frames per second, peak resident memory of the process (ru_maxrss), and the peak
minus the memory after building the model (what the video itself costs).
`--max-frames` doubles T until a run exceeds the budget (or fails), then bisects: the largest T whose
peak stays within the budget.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rss_gb() -> float:
    """Current resident memory of this process (GB), from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9


def _official_style_core(value, spatial_shapes, sampling_locations, attention_weights, *unused):
    """Deformable sampling written as the official pure-PyTorch fallback does it: every level's
    samples are stacked into one [N*M, D, Lq, L*P] tensor, then weighted and summed."""
    import torch
    import torch.nn.functional as F

    from vis_zoo.modeling.ms_deform_attn import spatial_shapes_to_list

    shapes = spatial_shapes_to_list(spatial_shapes)
    n, _, heads, dim = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    samples = []
    for lvl, (h, w) in enumerate(shapes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(n * heads, dim, h, w)
        grid = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        samples.append(F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, lq, levels * points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1).view(n, heads * dim, lq)
    return out.transpose(1, 2).contiguous()


def use_official_style_path() -> None:
    """Emulate the official inference cost in this process: the full Mask2Former forward (every
    layer's /4 frame masks and class logits) and the official-style deformable sampling."""
    import vis_zoo.modeling.ms_deform_attn as msda
    from vis_zoo.modeling.mask2former.head import Mask2FormerHead

    msda.ms_deform_attn_core = _official_style_core

    def full_forward_queries(self, features, num_frame_query_layers=1):
        out = self.forward(features, num_frame_query_layers=num_frame_query_layers)
        return {"frame_queries": out["frame_queries"], "pred_logits": out["pred_logits"],
                "pixel_features": out["pixel_features"]}

    Mask2FormerHead.forward_queries = full_forward_queries


def run_one(frames: int, height: int, width: int, threads: int, config: str, opts,
            official_style: bool = False) -> dict:
    """One measurement in this process; returns a dict (printed as JSON by the child)."""
    import torch

    if official_style:
        use_official_style_path()
    from detectron2.modeling import build_model

    from vis_zoo.engine.setup import build_config

    torch.set_num_threads(threads)
    cfg = build_config(config, ["MODEL.DEVICE", "cpu"] + list(opts))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(0)

    def video(t):
        return {"video_id": 0, "height": height, "width": width,
                "image": [torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8) for _ in range(t)]}

    with torch.no_grad():
        model([video(2)])  # warm-up (allocator, kernels)
        base = _rss_gb()
        inputs = [video(frames)]
        start = time.perf_counter()
        out = model(inputs)
        elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB
    assert len(out[0]["pred_masks"]) == len(out[0]["pred_scores"])
    return {"frames": frames, "seconds": elapsed, "fps": frames / elapsed, "peak_gb": peak,
            "model_gb": base, "video_gb": peak - base}


def measure(frames: int, args) -> dict:
    cmd = [sys.executable, "-m", "vis_zoo_projects.vita.benchmark", "--child", str(frames),
           "--size", str(args.size[0]), str(args.size[1]), "--threads", str(args.threads),
           "--config-file", args.config_file] + (["--official-style"] if args.official_style else []) + (["--opts"] + list(args.opts) if args.opts else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    return {"frames": frames, "error": (proc.stderr or proc.stdout)[-500:]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config-file", default=os.path.join(REPO_ROOT, "configs/vita/ytvis19_R50.yaml"))
    parser.add_argument("--max-frames", action="store_true", help="search the largest T within --budget-gb")
    parser.add_argument("--budget-gb", type=float, default=8.0)
    parser.add_argument("--official-style", action="store_true",
                        help="emulate the official inference path (for same-run speed ratios)")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child, args.size[0], args.size[1], args.threads, args.config_file, args.opts,
                                  args.official_style)))
        return
    if args.max_frames:
        ok, bad, t = 0, None, 32
        while bad is None:
            r = measure(t, args)
            print(json.dumps(r), flush=True)
            if "error" in r or r["peak_gb"] > args.budget_gb:
                bad = t
            else:
                ok, t = t, t * 2
        while bad - ok > max(1, ok // 20):  # bisect to 5%
            mid = (ok + bad) // 2
            r = measure(mid, args)
            print(json.dumps(r), flush=True)
            if "error" in r or r["peak_gb"] > args.budget_gb:
                bad = mid
            else:
                ok = mid
        print(f"max frames within {args.budget_gb} GB at {args.size[0]}x{args.size[1]}: {ok}")
        return
    print("| T | s | frames/s | peak GB | model GB | video GB |")
    print("|---|---|---|---|---|---|")
    for t in args.frames:
        r = measure(t, args)
        if "error" in r:
            print(f"| {t} | error: {r['error']!r} |")
            continue
        print(f"| {t} | {r['seconds']:.1f} | {r['fps']:.2f} | {r['peak_gb']:.2f} | {r['model_gb']:.2f} | {r['video_gb']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
