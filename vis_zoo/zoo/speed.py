"""Inference speed and peak memory of any VIS Zoo model on a random video.

Each (config, T) pair is measured in a fresh Python process (``python -m vis_zoo.zoo.speed``), so
the peak resident memory (``ru_maxrss``) is that measurement's own. In the child: torch uses exactly
``threads`` threads; the model is built from the config with random weights and put in eval mode;
one warm-up call is excluded (`measure_speed(..., warmup=False)` skips it: the benchmark's memory
probes need the peak of one call only); then ``repeats`` timed calls of ``model([video])`` under
``torch.no_grad()`` (each the whole pipeline: backbone, heads, association, masks at original size)
give frames per second = T / median time. The video is T random uint8 frames of the given size, made
as the model reads them (`RandomFrames`: none is held in memory), given at that size
(``height``/``width`` equal to the frame size, i.e. no resizing after the model).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from collections.abc import Sequence
from typing import Callable, List, Optional

import torch

from .memory import peak_cuda_gb, peak_rss_gb


@dataclass
class SpeedResult:
    config_file: str
    frames: int
    height: int
    width: int
    threads: int
    fps: float
    median_s: float
    times_s: List[float]
    peak_rss_gb: float  # peak resident memory of the measuring process (CPU)
    peak_cuda_gb: Optional[float]  # peak CUDA memory allocated, when on CUDA
    device: str
    load_avg_1min: float  # system load when the measurement ended (other processes skew timings)
    mode: str = (
        "model"  # "model": the whole inference; "backbone": model.backbone alone on the frames
    )


class RandomFrames(Sequence):
    """T random uint8 frames [3, H, W], each made when indexed from a generator seeded by
    (seed, frame index): the same frame every time, and none held in memory (a benchmark of a
    10,000-frame video measures the model, not its input)."""

    def __init__(self, num_frames: int, height: int, width: int, seed: int = 0):
        self.num_frames, self.height, self.width, self.seed = num_frames, height, width, seed

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index) + (self.num_frames if int(index) < 0 else 0)
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} outside [0, {self.num_frames})")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return torch.randint(0, 256, (3, self.height, self.width), dtype=torch.uint8, generator=g)


def video_input(video_id, frames: Sequence, height: int, width: int, instances=None) -> dict:
    """A mapper-like input dict of a video without files: `frames` T uint8 RGB [3, H, W]; with
    `instances` (T detectron2 `Instances`) a training input, else a test input."""
    num_frames = len(frames)
    video = {
        "video_id": video_id,
        "height": height,
        "width": width,
        "length": num_frames,
        "frame_idx": list(range(num_frames)),
        "file_names": [""] * num_frames,
        "image": frames,
    }
    if instances is not None:
        video["instances"] = instances
    return video


def random_video(
    num_frames: int, height: int, width: int, seed: int = 0, lazy: bool = False
) -> dict:
    """A test-mapper-like input: T uint8 RGB frames [3, H, W], in a list, or with `lazy` a
    `RandomFrames` sequence that makes each frame when the model reads it."""
    if lazy:
        frames = RandomFrames(num_frames, height, width, seed)
    else:
        g = torch.Generator().manual_seed(seed)
        frames = [
            torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
            for _ in range(num_frames)
        ]
    return video_input(0, frames, height, width)


def _build_eval_model(config_file: str, opts: Sequence[str], threads: int, seed: int):
    """(cfg, the model in eval mode built with torch seed `seed`, its device), torch using
    `threads` threads."""
    from detectron2.modeling import build_model

    from vis_zoo.engine.setup import build_config

    torch.set_num_threads(threads)
    cfg = build_config(config_file, list(opts))
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    return cfg, model, torch.device(cfg.MODEL.DEVICE)


def _backbone_pass(cfg, model, video: dict, device: torch.device) -> Callable[[], None]:
    """A function running ``model.backbone`` alone over the video's normalised frames,
    MODEL.VIS.TEST_CHUNK_SIZE frames [t, 3, H, W] per call."""
    frames = video["image"]
    chunk = max(1, int(cfg.MODEL.VIS.TEST_CHUNK_SIZE))
    pixel_mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, device=device).view(-1, 1, 1)
    pixel_std = torch.tensor(cfg.MODEL.PIXEL_STD, device=device).view(-1, 1, 1)

    def run_backbone() -> None:
        for start in range(0, len(frames), chunk):
            x = torch.stack([f.to(device).float() for f in frames[start : start + chunk]])
            model.backbone((x - pixel_mean) / pixel_std)

    return run_backbone


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of fn(), with CUDA synchronised before and after (its kernels are asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_speed(
    config_file: str,
    frames: int,
    height: int,
    width: int,
    *,
    threads: int = 2,
    repeats: int = 3,
    opts: Sequence[str] = (),
    seed: int = 0,
    mode: str = "model",
    warmup: bool = True,
) -> SpeedResult:
    """Measure in this process (use `measure_speed_in_subprocess` for a clean peak memory).

    mode "backbone" times ``model.backbone`` alone on the normalised frames,
    MODEL.VIS.TEST_CHUNK_SIZE
    frames per call: the reference cost that the rest of the pipeline adds to (a load-independent
    way to compare implementations is total time / backbone time measured in the same run).
    """
    if mode not in ("model", "backbone"):
        raise ValueError(f"mode must be 'model' or 'backbone', got {mode!r}")
    cfg, model, device = _build_eval_model(config_file, opts, threads, seed)
    video = random_video(frames, height, width, seed, lazy=True)  # frames made as read
    run_backbone = _backbone_pass(cfg, model, video, device)

    def inference() -> None:
        with torch.no_grad():
            if mode == "backbone":
                run_backbone()
            else:
                model([video])

    def run() -> float:
        return _seconds(inference, device)

    if warmup:  # allocator, oneDNN primitive caches; excluded. A memory probe needs no warm-up.
        run()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [run() for _ in range(repeats)]
    median = statistics.median(times)
    return SpeedResult(
        config_file=config_file,
        frames=frames,
        height=height,
        width=width,
        threads=threads,
        fps=frames / median,
        median_s=median,
        times_s=times,
        peak_rss_gb=peak_rss_gb(),
        peak_cuda_gb=peak_cuda_gb() if device.type == "cuda" else None,
        device=str(device),
        load_avg_1min=os.getloadavg()[0],
        mode=mode,
    )


def measure_model_vs_backbone(
    config_file: str,
    frames: int,
    height: int,
    width: int,
    *,
    threads: int = 1,
    repeats: int = 3,
    opts: Sequence[str] = (),
) -> dict:
    """Whole-inference time over backbone-alone time, the two interleaved in this process so that
    both see the same machine load. Returns {"backbone_s": [...], "model_s": [...], "ratio": median
    ratio}. Comparing this ratio with another implementation's (its backbone time / its model time)
    gives a speed-up that does not depend on how busy the machine is."""
    cfg, model, device = _build_eval_model(config_file, opts, threads, seed=0)
    video = random_video(frames, height, width)
    backbone = _backbone_pass(cfg, model, video, device)

    with torch.no_grad():
        backbone()
        model([video])  # warm-up, excluded
        backbone_s, model_s = [], []
        for _ in range(repeats):
            backbone_s.append(_seconds(backbone, device))
            model_s.append(_seconds(lambda: model([video]), device))
    return {
        "frames": frames,
        "backbone_s": backbone_s,
        "model_s": model_s,
        "ratio": statistics.median(model_s) / statistics.median(backbone_s),
    }


def official_child_command(
    script: str, official_root: str, frames: int, size: Sequence[int], threads: int, repeats: int
) -> List[str]:
    """The command line that reruns an official-code benchmark tool (`script`, one of
    tools/benchmark_official_*.py) as its `--child` measurement of a video of `frames` frames at
    `size` (H, W), for `run_measurement_child`; the tool appends its own options."""
    return [
        sys.executable,
        os.path.abspath(script),
        "--child",
        "--official-root",
        official_root,
        "--frames",
        str(frames),
        "--size",
        *map(str, size),
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
    ]


def run_measurement_child(
    cmd: Sequence[str], threads: int, *, timeout: float = 3600, what: str = "speed measurement"
) -> dict:
    """Run one measurement `cmd` in a fresh interpreter (OMP/MKL_NUM_THREADS = threads, so the peak
    memory and thread pool are its own) and return the JSON object on the last `{`-line of its
    stdout. Raises RuntimeError naming `what`, with the child's stderr, when it fails or prints no
    result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def measure_speed_in_subprocess(
    config_file: str,
    frames: int,
    height: int,
    width: int,
    *,
    threads: int = 2,
    repeats: int = 3,
    opts: Sequence[str] = (),
    timeout: float = 3600,
    mode: str = "model",
    warmup: bool = True,
) -> SpeedResult:
    """Run `measure_speed` in a fresh interpreter; raises RuntimeError with its stderr on failure.
    `warmup=False` times the first call (a long-video measurement cannot afford a second one)."""
    cmd = [
        sys.executable,
        "-m",
        "vis_zoo.zoo.speed",
        "--config-file",
        config_file,
        "--frames",
        str(frames),
        "--size",
        str(height),
        str(width),
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
        "--mode",
        mode,
        *([] if warmup else ["--no-warmup"]),
        *opts,
    ]
    return SpeedResult(
        **run_measurement_child(
            cmd, threads, timeout=timeout, what=f"speed measurement (T={frames}, {config_file})"
        )
    )


def format_speed_table(results: Sequence[SpeedResult], reference: Optional[dict] = None) -> str:
    """Markdown table; `reference` maps T -> (fps, peak GB) of another implementation for ratios."""
    head = "| T | frames/s | median s/video | peak RSS GB |"
    sep = "|---|---|---|---|"
    if reference:
        head += " ref frames/s | ref peak GB | speed-up | memory ratio |"
        sep += "---|---|---|---|"
    rows = [head, sep]
    for r in results:
        row = f"| {r.frames} | {r.fps:.2f} | {r.median_s:.2f} | {r.peak_rss_gb:.2f} |"
        if reference and r.frames in reference:
            ref_fps, ref_gb = reference[r.frames]
            speedup, memory_ratio = r.fps / ref_fps, r.peak_rss_gb / ref_gb
            row += f" {ref_fps:.2f} | {ref_gb:.1f} | {speedup:.2f}x | {memory_ratio:.2f} |"
        elif reference:
            row += " | | | |"
        rows.append(row)
    return "\n".join(rows)


def _child(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="one speed measurement (run by measure_speed_in_subprocess)"
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--size", type=int, nargs=2, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", default="model", choices=["model", "backbone"])
    parser.add_argument("--no-warmup", action="store_true", help="time the first call")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    result = measure_speed(
        args.config_file,
        args.frames,
        args.size[0],
        args.size[1],
        threads=args.threads,
        repeats=args.repeats,
        opts=args.opts,
        mode=args.mode,
        warmup=not args.no_warmup,
    )
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    _child()
