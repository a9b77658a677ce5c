#!/usr/bin/env python
"""Speed and peak memory of the OFFICIAL VisTR code on CPU, for side-by-side comparisons with ours.

    python tools/benchmark_official_vistr.py --official-root /path/to/official_vistr \
        --frames 18 36 --size 360 640 --threads 2 --repeats 2 [--json official_vistr_speed.json]

`--official-root` is a copy of Epiphqny/VisTR holding at least its `models` and `util` packages (an
`__init__.py` may be missing in `util` or `models/dcn`: both are then namespace packages, which
works too). The official code is not part of VIS Zoo and is never imported by it; only this tool's
child process imports it.

Each T runs in a fresh process (`--child`), so the peak resident memory is that measurement's own.
The child (torch.set_num_threads(threads), OMP/MKL_NUM_THREADS=threads as for ours) builds the model
with the official `models.build_model(args)`, `args` holding the defaults of the official main.py
with `--masks` (the segmentation model), `--backbone resnet50` (or --backbone), num_frames = T,
num_queries = 10 T (10 instances per frame, as inference.py's --num_ins) and device cpu; random
weights (torch.manual_seed(0) before the build), eval mode. Then one warm-up call (excluded) and
`repeats` timed calls under torch.no_grad(), each on the same T random uint8 frames [3, H, W] as
ours (`vis_zoo.zoo.speed.random_video`, seed 0) — frames/s = T / median time, peak RSS from
`vis_zoo.zoo.memory.peak_rss_gb` (GB of 2^30 bytes): the definitions `tools/benchmark_speed.py` uses
for ours.

What one timed call covers (the official inference.py for one clip, from decoded frames on):
  1. ToTensor + Normalize of every frame (uint8 -> float / 255, ImageNet mean/std) and torch.cat of
     the T frames into one [T, 3, H, W] tensor — our models do the same normalisation inside their
     call;
  2. `outputs = model(img)` — the only line inference.py itself labels as "inference time";
  3. inference.py's post-processing up to masks at the input size: softmax of pred_logits without
     the no-object column, F.interpolate of pred_masks [T, 10, H/4, W/4] to (H, W) (bilinear),
     sigmoid, .cpu().numpy() > 0.5, and the per-slot scores (max) and labels (argmax) in numpy.
Not timed: image decoding and inference.py's Resize(300) (the frames are given at the requested
size, as ours are: compare at equal input size), and its per-instance loop that RLE-encodes masks
for the results JSON (ours keeps bool masks too). Step 2 alone is also reported ("model() s/video").

Deviations from the official code, all outside the timed arithmetic except the first:
  * deformable convolution: the mask head's DeformConv (models/dcn/deform_conv.py) runs a compiled
    CUDA extension `models.dcn._C` and raises NotImplementedError for CPU tensors. Before the
    official modules are imported, an empty stand-in for `models.dcn._C` is put in sys.modules (so
    the module imports), and the module's `deform_conv` function (the autograd op DeformConv.forward
    calls) is replaced by `cpu_deform_conv`, which calls torchvision.ops.deform_conv2d with the
    layer's weight, stride, padding and dilation. The official DeformConv module itself (parameters,
    init, forward) is unchanged. The offset layout is the same: for each deformable group, 2 kh kw
    channels, (dy, dx) per kernel tap with taps in row-major order — detectron2, whose
    deform_conv.py the official file copies, makes the same call on CPU. (The official kernel
    returns 0 for a sample point within one pixel outside the image where torchvision interpolates
    with the zero border: a value difference at the border, not a cost difference. conv_offset is
    zero-initialised officially, so with random weights every offset is 0 anyway.)
  * no download: the official Backbone asks torchvision for `pretrained=is_main_process()` (True),
    which would download ImageNet weights; this machine has no internet, so while the model is
    built, `torchvision.models.<backbone>` is wrapped to build with weights=None (random weights, as
    ours).
  * util/misc.py tests `float(torchvision.__version__[:3]) < 0.7`, true for torchvision 0.1x
    ("0.1"), and then imports `torchvision.ops._new_empty_tensor` and
    `torchvision.ops.misc._output_size`, which recent torchvision no longer has: stand-ins that
    raise if ever called are added first. They are only reached by util.misc.interpolate on an empty
    tensor, which inference never does (interpolate itself is only used in the training loss).
"""

import argparse
import json
import os
import statistics
import sys
import time
import types
from argparse import Namespace

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_INS = 10  # inference.py --num_ins: instance slots per frame (num_queries = 10 T)


def official_args(num_frames: int, backbone: str = "resnet50") -> Namespace:
    """The official main.py defaults (argparse), with the segmentation model (--masks), the given
    backbone and clip length, num_queries = 10 T, and device cpu."""
    return Namespace(
        lr=1e-4,
        lr_backbone=1e-5,
        batch_size=1,
        weight_decay=1e-4,
        epochs=16,
        lr_drop=13,
        clip_max_norm=0.1,
        pretrained_weights="r101_pretrained.pth",
        backbone=backbone,
        dilation=False,
        position_embedding="sine",
        enc_layers=6,
        dec_layers=6,
        dim_feedforward=2048,
        hidden_dim=384,
        dropout=0.1,
        nheads=8,
        num_frames=num_frames,
        num_queries=NUM_INS * num_frames,
        pre_norm=False,
        masks=True,
        aux_loss=True,
        set_cost_class=1.0,
        set_cost_bbox=5.0,
        set_cost_giou=2.0,
        mask_loss_coef=1.0,
        dice_loss_coef=1.0,
        bbox_loss_coef=5.0,
        giou_loss_coef=2.0,
        eos_coef=0.1,
        dataset_file="ytvos",
        ytvos_path=None,
        remove_difficult=False,
        output_dir="r101_vistr",
        device="cpu",
        seed=42,
        resume="",
        start_epoch=0,
        eval=False,
        num_workers=4,
        world_size=1,
        dist_url="env://",
        distributed=False,
    )


def cpu_deform_conv(
    input,
    offset,
    weight,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    deformable_groups=1,
    im2col_step=64,
):
    """Drop-in for the official `deform_conv` op (same signature), on any device via
    torchvision.ops.deform_conv2d. `groups` and `deformable_groups` are implied there by the weight
    and offset shapes; they are checked against them instead of being passed."""
    import torchvision
    from torch.nn.modules.utils import _pair

    if input.dim() != 4:
        raise ValueError(f"Expected 4D tensor as input, got {input.dim()}D tensor instead.")
    kh, kw = weight.shape[-2:]
    if input.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"input has {input.shape[1]} channels, weight expects {weight.shape[1]} x {groups} "
            "groups"
        )
    if offset.shape[1] != 2 * deformable_groups * kh * kw:
        raise ValueError(
            f"offset has {offset.shape[1]} channels, expected 2 x {deformable_groups} x {kh} x {kw}"
        )
    return torchvision.ops.deform_conv2d(
        input,
        offset,
        weight,
        None,
        stride=_pair(stride),
        padding=_pair(padding),
        dilation=_pair(dilation),
    )


def _unavailable(*args, **kwargs):
    raise RuntimeError("the official CUDA extension is not available in this CPU benchmark")


def install_dcn_shim() -> None:
    """Make the official `models.dcn.deform_conv` importable without its compiled extension and
    route its `deform_conv` op through `cpu_deform_conv`. Needs the official root on sys.path."""
    stand_in = types.ModuleType("models.dcn._C")
    stand_in.__doc__ = (
        "stand-in for the official CUDA extension (tools/benchmark_official_vistr.py)"
    )
    for name in (
        "deform_conv_forward",
        "deform_conv_backward_input",
        "deform_conv_backward_filter",
        "modulated_deform_conv_forward",
        "modulated_deform_conv_backward",
    ):
        setattr(stand_in, name, _unavailable)
    sys.modules["models.dcn._C"] = stand_in
    import models.dcn.deform_conv as official_dcn  # imports the whole official `models` package

    official_dcn.deform_conv = cpu_deform_conv  # looked up by DeformConv.forward at call time


def install_torchvision_compat() -> None:
    """util/misc.py imports these two when it reads torchvision 0.1x as < 0.7 (see the
    docstring)."""
    import torchvision
    import torchvision.ops.misc

    if not hasattr(torchvision.ops, "_new_empty_tensor"):
        torchvision.ops._new_empty_tensor = _unavailable
    if not hasattr(torchvision.ops.misc, "_output_size"):
        torchvision.ops.misc._output_size = _unavailable


def build_official_model(args: Namespace):
    """`models.build_model(args)` with the backbone's ImageNet download turned off."""
    import torchvision
    from models import build_model

    name = args.backbone
    original = getattr(torchvision.models, name)

    def without_download(*a, pretrained=False, weights=None, **kw):
        return original(*a, weights=None, **kw)

    setattr(torchvision.models, name, without_download)
    try:
        model, _criterion, _postprocessors = build_model(args)
    finally:
        setattr(torchvision.models, name, original)
    return model


def _child(args) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, _REPO)
    from vis_zoo.zoo.memory import peak_rss_gb
    from vis_zoo.zoo.speed import random_video

    torch.set_num_threads(args.threads)
    sys.path.insert(0, os.path.abspath(args.official_root))
    install_torchvision_compat()
    install_dcn_shim()

    frames = args.frames[0]
    height, width = args.size
    torch.manual_seed(0)
    model = build_official_model(official_args(frames, args.backbone)).to("cpu").eval()
    images = random_video(frames, height, width)["image"]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def run():
        start = time.perf_counter()
        # transform(im): ToTensor + Normalize, then torch.cat of the T frames (inference.py)
        img = torch.cat([((f.float() / 255.0 - mean) / std).unsqueeze(0) for f in images], 0)
        model_start = time.perf_counter()
        outputs = model(img)
        model_s = time.perf_counter() - model_start
        logits, masks = (
            outputs["pred_logits"].softmax(-1)[0, :, :-1],
            outputs["pred_masks"][0],
        )  # boxes unused
        pred_masks = (
            F.interpolate(
                masks.reshape(frames, NUM_INS, masks.shape[-2], masks.shape[-1]),
                (height, width),
                mode="bilinear",
            )
            .sigmoid()
            .cpu()
            .detach()
            .numpy()
            > 0.5
        )
        pred_logits = logits.reshape(frames, NUM_INS, logits.shape[-1]).cpu().detach().numpy()
        pred_scores = np.max(pred_logits, axis=-1)
        pred_labels = np.argmax(pred_logits, axis=-1)
        total_s = time.perf_counter() - start
        assert (
            pred_masks.shape == (frames, NUM_INS, height, width)
            and pred_scores.shape == pred_labels.shape
        )
        return total_s, model_s

    with torch.no_grad():
        run()  # warm-up (allocator, oneDNN primitive caches), excluded
        runs = [run() for _ in range(args.repeats)]
    times = [t for t, _ in runs]
    model_times = [m for _, m in runs]
    median = statistics.median(times)
    print(
        json.dumps(
            {
                "config_file": f"official VisTR ({args.backbone}, --masks)",
                "frames": frames,
                "height": height,
                "width": width,
                "threads": args.threads,
                "fps": frames / median,
                "median_s": median,
                "times_s": times,
                "peak_rss_gb": peak_rss_gb(),
                "peak_cuda_gb": None,
                "device": "cpu",
                "load_avg_1min": os.getloadavg()[0],
                "mode": "model",
                "model_call_times_s": model_times,
                "model_call_median_s": statistics.median(model_times),
                "num_queries": NUM_INS * frames,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def format_table(results) -> str:
    rows = [
        "| T | frames/s | median s/video | peak RSS GB | model() s/video |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['frames']} | {r['fps']:.2f} | {r['median_s']:.2f} | {r['peak_rss_gb']:.2f} | "
            f"{r['model_call_median_s']:.2f} |"
        )
    return "\n".join(rows)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--official-root", required=True, help="copy of Epiphqny/VisTR (its `models` and `util`)"
    )
    p.add_argument(
        "--frames", type=int, nargs="+", default=[18, 36], help="clip lengths T (one model each)"
    )
    p.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101"])
    p.add_argument("--timeout", type=float, default=3600, help="seconds per T")
    p.add_argument("--json", default="", help="write the results to this JSON file (atomically)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if (
        any(t < 1 for t in args.frames)
        or args.repeats < 1
        or args.threads < 1
        or min(args.size) < 1
    ):
        p.error("--frames, --size, --threads and --repeats must be positive")
    for sub in ("models", "util"):
        if not os.path.isdir(os.path.join(args.official_root, sub)):
            p.error(f"--official-root {args.official_root}: no `{sub}` package there")
    if args.child and len(args.frames) != 1:
        p.error("--child measures one T")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        _child(args)
        return 0
    results = []
    sys.path.insert(0, _REPO)
    from vis_zoo.zoo.speed import official_child_command, run_measurement_child

    for frames in args.frames:
        cmd = official_child_command(
            __file__, args.official_root, frames, args.size, args.threads, args.repeats
        ) + ["--backbone", args.backbone]
        try:
            r = run_measurement_child(
                cmd, args.threads, timeout=args.timeout, what=f"official VisTR, T={frames}"
            )
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        print(
            f"official T={frames}: {r['fps']:.2f} frames/s, {r['median_s']:.2f} s/video (times "
            f"{[round(x, 2) for x in r['times_s']]}; model() alone {r['model_call_median_s']:.2f} "
            "s), peak "
            f"{r['peak_rss_gb']:.2f} GB, load avg {r['load_avg_1min']:.2f}",
            flush=True,
        )
        results.append(r)
    print(
        f"\nofficial VisTR {args.backbone}, {args.size[0]}x{args.size[1]}, {args.threads} threads, "
        "device cpu\n"
    )
    print(format_table(results))
    if args.json:
        from vis_zoo.utils.io import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
