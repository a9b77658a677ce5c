"""Inference speed and peak memory of SeqFormer at the official R-50 size (random weights).

    python -m vis_zoo_projects.seqformer.benchmark --frames 5 10 40 --threads 2 [--height 360 --width 640]

Each length runs in a fresh subprocess: one warm-up video of 2 frames, then the timed video of T
frames (uint8 frames already resized, as the test mapper gives them). Reports frames per second
(T / wall time of model([video])) and the process' peak RSS (total, and the growth during the
timed video), with the config's chunk/window settings (MODEL.VIS.*), overridable with --opts.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def _build(opts):
    from detectron2.modeling import build_model

    from vis_zoo.config import get_vis_cfg

    cfg = get_vis_cfg()
    here = os.path.dirname(os.path.abspath(__file__))
    cfg_file = os.path.join(here, "..", "..", "configs", "seqformer", "ytvis19_R50.yaml")
    cfg.merge_from_file(os.path.normpath(cfg_file))
    cfg.MODEL.DEVICE = "cpu"
    cfg.merge_from_list(opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.eval()
    return model


def _video(frames, height, width):
    g = torch.Generator().manual_seed(0)
    return {"video_id": 0, "height": height, "width": width, "length": frames,
            "image": [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
                      for _ in range(frames)]}


def _stacked_core(value, shapes, locations, weights, recompute_backward=True):
    """The official pure-PyTorch fallback's formulation: every level's samples stacked, then weighted."""
    import torch.nn.functional as F

    n, _, heads, dim = value.shape
    _, lq, _, levels, points, _ = locations.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    samples = []
    for lvl, (h, w) in enumerate(shapes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(n * heads, dim, h, w)
        g = (2 * locations[:, :, :, lvl] - 1).transpose(1, 2).flatten(0, 1)
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    wts = weights.transpose(1, 2).reshape(n * heads, 1, lq, levels * points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * wts).sum(-1)
    return out.view(n, heads * dim, lq).transpose(1, 2).contiguous()


def official_cost_inference(model, video):
    """Emulates the official `inference()` + `inference.py` cost with our modules (same arithmetic,
    official schedule): all frames in one batch, the stacked deformable-attention formulation, and for
    each of the 6 decoder layers the mask head on every frame plus dynamic masks of all 300 queries;
    then the top-10 masks of the last layer upsampled to the original size."""
    import torch.nn.functional as F

    from vis_zoo.modeling import ms_deform_attn as msda
    from vis_zoo.modeling.backbone import normalize_and_pad
    from vis_zoo.modeling.deformable_transformer import flatten_levels, get_valid_ratio

    from . import transformer as sq_transformer

    saved = (msda.ms_deform_attn_core, sq_transformer.ms_deform_attn_core)
    msda.ms_deform_attn_core = sq_transformer.ms_deform_attn_core = _stacked_core
    try:
        frames = video["image"]
        t = len(frames)
        images = normalize_and_pad(frames, model.pixel_mean, model.pixel_std, 0)
        mask = model._image_mask(images)
        srcs, masks, poses = model._frame_levels(images.tensor, mask)
        src, mask_flat, pos, shapes, start = flatten_levels(srcs, masks, poses, model.transformer.level_embed)
        ratios = torch.stack([get_valid_ratio(m) for m in masks], 1)[:1]
        memory = model.transformer.encode(src, pos, mask_flat, shapes, start, ratios.repeat(t, 1, 1))
        hs, _, _, refs = model.transformer.decode(memory[None], mask_flat.view(1, t, -1), shapes, ratios,
                                                  model.query_embed.weight)
        hw = tuple(images.tensor.shape[-2:])
        for lvl in range(hs.shape[0]):
            logits = model.class_embed[lvl](hs[lvl, 0])
            feats = model._mask_features(memory, shapes)
            masks_l = model._masks(feats, refs[lvl][0], model.controller(hs[lvl, 0]), hw)
        _, idx = logits.sigmoid().flatten().topk(10)
        sel = masks_l[idx // model.num_classes]
        out = F.interpolate(sel, size=(video["height"], video["width"]), mode="bilinear", align_corners=False)
        return {"pred_scores": (out.sigmoid() > 0.5).flatten(1).any(1)}
    finally:
        msda.ms_deform_attn_core, sq_transformer.ms_deform_attn_core = saved


def run_one(frames, height, width, opts, official_cost=False):
    model = _build(opts)
    infer = (lambda v: official_cost_inference(model, v)) if official_cost else (lambda v: model([v])[0])
    with torch.no_grad():
        infer(_video(2, height, width))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    video = _video(frames, height, width)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = infer(video)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return {"frames": frames, "seconds": wall, "fps": frames / wall, "peak_rss_gb": peak,
            "peak_growth_gb": max(0.0, peak - rss0), "num_outputs": len(out["pred_scores"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[5, 10, 40])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides KEY VALUE ...")
    parser.add_argument("--official-cost", action="store_true",
                        help="time an emulation of the official inference schedule instead (see official_cost_inference)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(args.one, args.height, args.width, args.opts, args.official_cost)))
        return
    what = "official-schedule emulation" if args.official_cost else "ours"
    print(f"SeqFormer R-50 inference ({what}), {args.height}x{args.width}, threads={args.threads}, opts={args.opts}")
    print(f"{'T':>4s} {'seconds':>9s} {'fps':>7s} {'peak RSS GB':>12s} {'growth GB':>10s}")
    for t in args.frames:
        cmd = [sys.executable, "-m", "vis_zoo_projects.seqformer.benchmark", "--one", str(t),
               "--threads", str(args.threads), "--height", str(args.height), "--width", str(args.width),
               *(["--official-cost"] if args.official_cost else []), "--opts", *args.opts]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"T={t} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{t:4d} {r['seconds']:9.2f} {r['fps']:7.3f} {r['peak_rss_gb']:12.2f} {r['peak_growth_gb']:10.2f}",
              flush=True)


if __name__ == "__main__":
    main()
