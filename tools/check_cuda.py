#!/usr/bin/env python
"""Prove every method on a CUDA GPU: training with and without AMP, inference on a real-sized and a
long video, the masked-attention kernels, and two-process (NCCL) training when two GPUs are present.

    python tools/check_cuda.py                      # every method, ytvis19_R50 + synthetic_R18
    python tools/check_cuda.py --methods vita --json cuda_check.json

Random weights throughout. For each method and config (MODEL.DEVICE is set to the device):
- train fp32 / train AMP: a few optimizer steps on a random clip (float16 autocast with a gradient
  scaler on CUDA, bfloat16 autocast on CPU); every loss finite and the parameters changed.
- infer T×H×W: one video through the model's own inference path (windows, chunks, tracking), after
  one warm-up call on a short video; outputs finite and convertible to results entries; frames per
  second (synchronised) and peak `torch.cuda.max_memory_allocated`.
- attention: the shared attention with more than 512 keys where the first 512 are blocked for some
  queries equals an explicit softmax (the case PyTorch's blocked CPU kernel turned into NaN).
- 2-process training: `tools/train_net.py --num-gpus 2` for a few iterations (only with ≥ 2 GPUs).
Prints one table and writes it as JSON (--json). Without CUDA it says so and exits 0 without running
anything; `--device cpu` runs the same checks on the CPU (small sizes, for testing this tool).
Exit status 1 when any check failed.
"""

import argparse
import os
import subprocess
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from projects import METHODS  # noqa: E402  (the method folders; importing none of them yet)

CONFIG_NAMES = ("ytvis19_R50", "synthetic_R18")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument(
        "--config-names",
        nargs="+",
        default=list(CONFIG_NAMES),
        help="config file names under configs/<method>/ (without .yaml)",
    )
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (to test this tool)")
    p.add_argument("--train-iters", type=int, default=4, help="optimizer steps per training check")
    p.add_argument("--train-size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=40, help="frames of the real-sized video")
    p.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    p.add_argument("--long-frames", type=int, default=300, help="frames of the long video")
    p.add_argument("--long-size", type=int, nargs=2, default=[180, 320], metavar=("H", "W"))
    p.add_argument("--skip-two-process", action="store_true", help="skip the 2-GPU training check")
    p.add_argument("--json", default="", help="write the table (and the machine) to this JSON file")
    return p.parse_args(argv)


def cuda_unavailable_message() -> Optional[str]:
    """None when CUDA can be used, else one line saying why nothing will run."""
    if torch.cuda.is_available():
        return None
    return (
        f"CUDA is not available here (torch {torch.__version__}, built with CUDA "
        f"{torch.version.cuda or 'none'}): no check was run."
    )


def machine_facts(device: torch.device) -> Dict[str, object]:
    facts = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "python": sys.version.split()[0],
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["gpu_count"] = torch.cuda.device_count()
    return facts


# ---------------------------------------------------------------------------------------- the
# checks
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> Optional[float]:
    return torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None


def build_model_for(config_file: str, device: torch.device):
    """(cfg, model) for `config_file` on `device`, random weights (seed 0)."""
    from detectron2.modeling import build_model

    from vis_zoo.engine.setup import build_config

    cfg = build_config(config_file, ["MODEL.DEVICE", str(device)])
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def check_training(
    cfg, model, device: torch.device, *, amp: bool, iters: int, height: int, width: int
) -> Dict[str, object]:
    """`iters` optimizer steps on one random clip of INPUT.SAMPLING_FRAME_NUM frames.

    Raises AssertionError on a non-finite loss or when no parameter changed."""
    from vis_zoo.config import num_classes_from_config
    from vis_zoo.engine.trainer import build_optimizer
    from vis_zoo.zoo.stages import random_training_batch

    model.train()
    optimizer = build_optimizer(cfg, model)
    batch = random_training_batch(
        1, int(cfg.INPUT.SAMPLING_FRAME_NUM), height, width, num_classes_from_config(cfg)
    )
    # float16 + a gradient scaler on CUDA (as detectron2's AMPTrainer); CPU autocast runs bfloat16.
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    times, losses = [], []
    _reset_peak(device)
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            loss_dict = model(batch)
        loss = sum(loss_dict.values())
        if not torch.isfinite(loss):
            raise AssertionError(
                f"non-finite loss {float(loss)}: { {k: float(v) for k, v in loss_dict.items()} }"
            )
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _sync(device)
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    changed = sum(int(not torch.equal(a, b)) for a, b in zip(before, after))
    if changed == 0:
        raise AssertionError(f"no parameter changed in {iters} steps (losses {losses})")
    model.eval()
    return {
        "s_per_iter": sorted(times)[len(times) // 2],
        "peak_gb": _peak_gb(device),
        "detail": f"loss {losses[0]:.3g} -> {losses[-1]:.3g}, {changed}/{len(after)} tensors "
        "changed",
    }


def check_inference(
    cfg, model, device: torch.device, *, frames: int, height: int, width: int
) -> Dict[str, object]:
    """One random video through the model's inference path; finite, valid outputs; synchronised
    frames per second (after a warm-up call on a 2-frame video) and peak CUDA memory."""
    from vis_zoo.evaluation.results import video_output_to_results
    from vis_zoo.zoo.speed import random_video

    model.eval()
    with torch.no_grad():
        model([random_video(2, height, width, seed=3)])  # allocator and kernel caches, excluded
        video = random_video(frames, height, width, seed=4)
        _reset_peak(device)
        _sync(device)
        start = time.perf_counter()
        output = model([video])[0]
        _sync(device)
        seconds = time.perf_counter() - start
    scores = output["pred_scores"]
    if not torch.isfinite(scores).all():
        raise AssertionError(f"non-finite scores: {scores.tolist()}")
    # Raises a ValueError naming the video when masks, lengths or sizes are inconsistent.
    results = video_output_to_results(0, output, length=frames, height=height, width=width)
    return {
        "fps": frames / seconds,
        "peak_gb": _peak_gb(device),
        "detail": f"{len(results)} tracks, {seconds:.2f} s",
    }


def check_attention(device: torch.device) -> Dict[str, object]:
    """The shared attention at 960 keys, the first 600 blocked for half the queries, equals an
    explicit -inf softmax on `device` (float32 and, on CUDA, float16)."""
    from vis_zoo.modeling.attention import MaskedMultiheadAttention

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    attention = MaskedMultiheadAttention(64, 8).to(device).eval()
    query = torch.randn(20, 2, 64, generator=gen).to(device)
    key = torch.randn(960, 2, 64, generator=gen).to(device)
    blocked = torch.rand(2 * 8, 20, 960, generator=gen) > 0.5
    blocked[:, ::2, :600] = True
    blocked[:, ::2, 600:] = False
    blocked = blocked.to(device)
    worst = 0.0
    dtypes = [torch.float32] + ([torch.float16] if device.type == "cuda" else [])
    for dtype in dtypes:
        with (
            torch.no_grad(),
            torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
        ):
            fused = attention(query, key, key, attn_mask=blocked)[0].float()
        with torch.no_grad():
            reference = torch.nn.MultiheadAttention.forward(
                attention, query, key, key, attn_mask=blocked, need_weights=True
            )[0]
        if not torch.isfinite(fused).all():
            raise AssertionError(f"non-finite attention output in {dtype}")
        error = (fused - reference).abs().max().item()
        tolerance = 1e-4 if dtype == torch.float32 else 2e-2
        if error > tolerance:
            raise AssertionError(f"{dtype}: max |fused - explicit| = {error:.3g} > {tolerance}")
        worst = max(worst, error)
    return {"detail": f"max |fused - explicit softmax| {worst:.2g} ({', '.join(map(str, dtypes))})"}


def check_two_process_training(
    config_file: str, output_dir: str, iters: int = 4
) -> Dict[str, object]:
    """tools/train_net.py --num-gpus 2 for `iters` iterations (NCCL); finite losses in
    metrics.json."""
    import json

    cmd = [
        sys.executable,
        os.path.join(REPO_ROOT, "tools", "train_net.py"),
        "--config-file",
        config_file,
        "--num-gpus",
        "2",
        "SOLVER.MAX_ITER",
        str(iters),
        "SOLVER.CHECKPOINT_PERIOD",
        str(iters),
        "TEST.EVAL_PERIOD",
        "0",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        output_dir,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr[-1500:]}")
    with open(os.path.join(output_dir, "metrics.json")) as f:
        losses = [json.loads(line).get("total_loss") for line in f if line.strip()]
    losses = [x for x in losses if x is not None]
    if not losses or not all(x == x and abs(x) != float("inf") for x in losses):
        raise AssertionError(f"losses in metrics.json: {losses}")
    return {
        "detail": f"{iters} iterations in {time.perf_counter() - start:.0f} s, last loss "
        f"{losses[-1]:.3g}"
    }


# -------------------------------------------------------------------------------------- the table
def run_check(
    rows: List[dict],
    method: str,
    config: str,
    name: str,
    fn: Callable[[], dict],
    device: torch.device,
) -> None:
    """Run one check, append its row (status "ok" or "FAIL"), print progress."""
    row = {"method": method, "config": config, "check": name}
    try:
        row.update(fn())
        row["status"] = "ok"
    except Exception as error:  # a failed check is a row of the table, not the end of the run
        row["status"] = "FAIL"
        row["detail"] = f"{type(error).__name__}: {error}"
        row["traceback"] = traceback.format_exc(limit=8)
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    rows.append(row)
    print(f"[{row['status']}] {method} {config} {name}: {row.get('detail', '')}", flush=True)


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of the rows (method, config, check, status, s/iter, fps, peak GB, detail)."""

    def number(value, digits):
        return "—" if value is None else f"{value:.{digits}f}"

    lines = [
        "| method | config | check | status | s/iter | fps | peak GB | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        detail = str(r.get("detail", "")).replace("|", "/").replace("\n", " ")[:160]
        lines.append(
            f"| {r['method']} | {r['config']} | {r['check']} | {r['status']} | "
            f"{number(r.get('s_per_iter'), 3)} | {number(r.get('fps'), 2)} | "
            f"{number(r.get('peak_gb'), 2)} | {detail} |"
        )
    return "\n".join(lines)


def check_config(
    rows: List[dict], method: str, config_name: str, config_file: str, device: torch.device, args
) -> None:
    """Build, train (fp32, AMP) and infer (real-sized and long video) one config; rows appended.
    The model goes out of scope on return, so one config's memory is freed before the next."""
    built: Dict[str, object] = {}

    def build():
        built["cfg"], built["model"] = build_model_for(config_file, device)
        millions = sum(p.numel() for p in built["model"].parameters()) / 1e6
        return {"detail": f"{millions:.2f} M parameters"}

    run_check(rows, method, config_name, "build", build, device)
    if "model" not in built:
        return
    cfg, model = built["cfg"], built["model"]
    for amp in (False, True):
        run_check(
            rows,
            method,
            config_name,
            "train AMP" if amp else "train fp32",
            lambda amp=amp: check_training(
                cfg,
                model,
                device,
                amp=amp,
                iters=args.train_iters,
                height=args.train_size[0],
                width=args.train_size[1],
            ),
            device,
        )
    for frames, (h, w) in ((args.frames, args.size), (args.long_frames, args.long_size)):
        run_check(
            rows,
            method,
            config_name,
            f"infer {frames}×{h}×{w}",
            lambda frames=frames, h=h, w=w: check_inference(
                cfg, model, device, frames=frames, height=h, width=w
            ),
            device,
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        message = cuda_unavailable_message()
        if message:
            print(message)
            return 0
    from vis_zoo.utils.io import atomic_write_json

    rows: List[dict] = []
    run_check(rows, "shared", "-", "attention > 512 keys", lambda: check_attention(device), device)
    for method in args.methods:
        for config_name in args.config_names:
            config_file = os.path.join(REPO_ROOT, "configs", method, f"{config_name}.yaml")
            if os.path.exists(config_file):
                check_config(rows, method, config_name, config_file, device, args)
    if device.type == "cuda" and torch.cuda.device_count() >= 2 and not args.skip_two_process:
        import tempfile

        for method in args.methods:
            config_file = os.path.join(REPO_ROOT, "configs", method, "synthetic_R18.yaml")
            with tempfile.TemporaryDirectory() as out:
                run_check(
                    rows,
                    method,
                    "synthetic_R18",
                    "train 2 processes (NCCL)",
                    lambda: check_two_process_training(config_file, out),
                    device,
                )
    table = format_table(rows)
    facts = machine_facts(device)
    print(f"\n{facts}\n\n{table}")
    if args.json:
        atomic_write_json(args.json, {"machine": facts, "rows": rows})
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
