#!/usr/bin/env python
"""Speed and peak memory of multi-scale deformable attention (vis_zoo.modeling.ms_deform_attn).

Compares our core (per-level sampling and accumulation, recomputing backward) with the plain
pure-PyTorch formulation of the official fallback (all levels' samples stacked into one
[N*heads, head_dim, Lq, levels*points] tensor, then weighted and summed; plain autograd), on:

    seqformer_enc   SeqFormer encoder self-attention, 360x640 frames: 4 levels (/8../64), 8 heads,
                    4 points, C=256, Lq = S = 4820 tokens per frame, N = --frames
    seqformer_dec   SeqFormer decoder cross-attention: 300 queries per frame on the same memory
    m2f_pixel_dec   Mask2Former pixel decoder encoder: 3 levels (/8../32), 8 heads, 4 points,
                    self-attention over all S = 4780 tokens, N = --frames

    python tools/benchmark_ms_deform_attn.py --frames 5 --threads 2 [--device cuda] [--backward]

Peak memory, in MB (2^20 bytes), from `vis_zoo.zoo.memory`: on CUDA the allocator's peak
(`peak_cuda_gb`, reset before the case); on CPU the growth of the process' peak RSS (`peak_rss_gb`;
each case runs in a fresh subprocess). Times are the median of --repeat runs after one warm-up.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

CASES = {
    # name: (level shapes, number of queries (None = all tokens))
    "seqformer_enc": ([(45, 80), (23, 40), (12, 20), (6, 10)], None),
    "seqformer_dec": ([(45, 80), (23, 40), (12, 20), (6, 10)], 300),
    "m2f_pixel_dec": ([(45, 80), (23, 40), (12, 20)], None),
}


def stacked_core(value, shapes, locations, weights):
    """Reference formulation: sample every level, stack all samples, weight, sum (plain
    autograd)."""
    n, _, heads, dim = value.shape
    _, lq, _, levels, points, _ = locations.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    samples = []
    for lvl, (h, w) in enumerate(shapes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(n * heads, dim, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        samples.append(
            F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    wts = weights.transpose(1, 2).reshape(n * heads, 1, lq, levels * points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * wts).sum(-1)
    return out.view(n, heads * dim, lq).transpose(1, 2).contiguous()


def _peak_gb(device) -> float:
    """The peak so far: CUDA allocator on CUDA, resident memory of this process on CPU."""
    from vis_zoo.zoo.memory import peak_cuda_gb, peak_rss_gb

    return peak_cuda_gb(device) if device.type == "cuda" else peak_rss_gb()


def run_case(case, impl, frames, device, backward, repeat, heads=8, points=4, channels=256):
    from vis_zoo.modeling.ms_deform_attn import ms_deform_attn_core

    shapes, num_queries = CASES[case]
    s = sum(h * w for h, w in shapes)
    lq = s if num_queries is None else num_queries
    g = torch.Generator().manual_seed(0)
    value = torch.randn(frames, s, heads, channels // heads, generator=g).to(device)
    loc = torch.rand(frames, lq, heads, len(shapes), points, 2, generator=g).to(device)
    wts = torch.rand(frames, lq, heads, len(shapes), points, generator=g).to(device).softmax(-1)
    if backward:
        for t in (value, loc, wts):
            t.requires_grad_(True)
    fn = (
        (lambda: ms_deform_attn_core(value, shapes, loc, wts))
        if impl == "ours"
        else (lambda: stacked_core(value, shapes, loc, wts))
    )

    def once():
        if backward:
            out = fn()
            out.backward(torch.ones_like(out))
            for t in (value, loc, wts):
                t.grad = None
        else:
            with torch.no_grad():
                fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    base = _peak_gb(device)
    once()  # warm-up (and the peak)
    peak_gb = _peak_gb(device) - base
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return {
        "case": case,
        "impl": impl,
        "frames": frames,
        "queries": lq,
        "backward": backward,
        "time_ms": 1000 * statistics.median(times),
        "peak_mb": peak_gb * 1024,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--one", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.one:
        print(
            json.dumps(
                run_case(args.one[0], args.one[1], args.frames, device, args.backward, args.repeat)
            )
        )
        return
    rows = []
    for case in args.cases:
        for impl in ("stacked", "ours"):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                case,
                impl,
                "--frames",
                str(args.frames),
                "--threads",
                str(args.threads),
                "--device",
                args.device,
                "--repeat",
                str(args.repeat),
            ]
            if args.backward:
                cmd.append("--backward")
            out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if out.returncode != 0:
                raise RuntimeError(f"{case}/{impl} failed:\n{out.stderr}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mode = "forward+backward" if args.backward else "forward (no grad)"
    print(f"device={args.device} threads={args.threads} frames={args.frames} {mode}")
    print(f"{'case':15s} {'impl':8s} {'Lq':>6s} {'time ms':>10s} {'peak MB':>10s}")
    for r in rows:
        print(
            f"{r['case']:15s} {r['impl']:8s} {r['queries']:6d} {r['time_ms']:10.1f} "
            f"{r['peak_mb']:10.1f}"
        )


if __name__ == "__main__":
    main()
