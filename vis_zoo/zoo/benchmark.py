"""The model-zoo benchmark: every method config measured the same way, results cached per row.

A row is one config (`configs/<method>/<name>.yaml`); methods are discovered from the folders, so a
method added later is benchmarked with no change here. Each measurement runs in a fresh process, so a
method that fails to build (or crashes, or runs out of memory) becomes an error in its row, and peak
memory is that measurement's own:

stage "model"      (child `--child model`): config facts (method, backbone, datasets, default input
                   size), parameters, GFLOPs per frame (fvcore's FlopCountAnalysis of one inference
                   call on a `flops_frames`-frame video, divided by the frames the model processed:
                   `flops_frames`, or more for a model whose `processed_frames(T)` hook says so, e.g.
                   VisTR's fixed clip of MODEL.VISTR.NUM_FRAMES; the row keeps the per-video count
                   too; fvcore counts one fused
                   multiply-add as one flop; we add a handle for aten::scaled_dot_product_attention,
                   which fvcore skips; element-wise ops are not counted). The JIT tracer behind fvcore
                   keeps every intermediate tensor alive until the trace ends (an R-50 at 360x640 needs
                   ~2 GB per traced frame), hence a separate, small `flops_frames`.
stage "speed"      inference time and peak memory versus T: `vis_zoo.zoo.speed.measure_speed_in_subprocess`
                   (one process per T; random weights, random T-frame video, warm-up excluded, median of
                   `repeats`, CUDA synchronised; peak = ru_maxrss on CPU, max_memory_allocated on CUDA).
                   The table's ms/frame, FPS and peak memory are the point at T = `frames`.
stage "max_frames" the largest T that one model call processes within `budget_gb` (child `--child probe`):
                   the whole video as one window (MODEL.VIS.TEST_WINDOW_SIZE = STRIDE = T; a method that
                   rejects that keeps its own window, noted in the row); T doubles from
                   `max_frames_start` until a run exceeds the budget (a watchdog stops it there), then
                   bisects; `max_frames_cap` bounds the search (reported as ">= cap").
stage "train_speed" (child `--child train`): training seconds per iteration (forward + backward +
                   optimizer step on a random batch of `train_batch` videos of INPUT.SAMPLING_FRAME_NUM
                   frames at the benchmark size, warm-up excluded, median).
stage "accuracy"   `tools/train_net.py` on the config (its own schedule, in a subprocess), then AP, AP50,
                   AP75, AR1, AR10 from its metrics.json, and the wall time; only for configs whose test
                   datasets are synthetic (metadata key `synthetic_split`), since nothing else is
                   available offline. Or, for a row given a finished run (`accuracy_from_run`, the
                   tool's --accuracy-from KEY=RUN_DIR), the same numbers read from RUN_DIR without
                   training, the wall time from its log.txt ("Total training time", which leaves out
                   the final evaluation).
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG_NAMES = ("synthetic_R18", "ytvis19_R50")
STAGES = ("model", "speed", "max_frames", "train_speed", "accuracy")
ACCURACY_KEYS = ("AP", "AP50", "AP75", "AR1", "AR10")
_MARKER = "@@VIS_ZOO_BENCHMARK@@ "

__all__ = [
    "BenchmarkEntry",
    "BenchmarkSettings",
    "accuracy_from_run",
    "accuracy_from_runs",
    "apply_accuracy_from",
    "discover_configs",
    "machine_info",
    "load_results",
    "parse_train_log",
    "parse_train_metrics",
    "processed_frames",
    "random_training_batch",
    "run_benchmark",
    "search_max_frames",
]


# ------------------------------------------------------------------------------------------ settings
@dataclass
class BenchmarkEntry:
    """One row: `key` = "<method>/<config name>"."""

    key: str
    method: str
    config_file: str  # absolute path


@dataclass
class BenchmarkSettings:
    device: str = "cpu"
    threads: int = 2
    frames: int = 8  # T of the table's time / FPS / peak memory
    flops_frames: int = 2  # T of the GFLOPs count (tracing memory grows with T, see above)
    curve_frames: Tuple[int, ...] = (2, 4, 8, 16)  # T of the memory/time-versus-frames plot
    size: Optional[Tuple[int, int]] = None  # (H, W); None = per config (see default_input_size)
    repeats: int = 3
    budget_gb: float = 4.0
    max_frames_start: int = 8
    max_frames_cap: int = 64
    mem_limit_gb: float = 12.0  # hard stop for any measuring process (protects the machine)
    train_iters: int = 3
    train_batch: int = 1
    accuracy_opts: Tuple[str, ...] = ()  # extra KEY VALUE overrides for the accuracy training run
    child_timeout_s: float = 3 * 3600
    quick: bool = False

    @classmethod
    def quick_settings(cls, **overrides) -> "BenchmarkSettings":
        """Smoke-run settings: tiny sizes, one repeat, one training iteration, T <= 2."""
        values = dict(frames=2, flops_frames=1, curve_frames=(1, 2), size=(64, 96), repeats=1, max_frames_start=2,
                      max_frames_cap=2, train_iters=1, train_batch=1, child_timeout_s=600, quick=True,
                      accuracy_opts=("SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1000000"))
        values.update(overrides)
        return cls(**values)


def discover_configs(config_root: str, names: Sequence[str] = DEFAULT_CONFIG_NAMES,
                     methods: Optional[Sequence[str]] = None) -> List[BenchmarkEntry]:
    """Every `<config_root>/<method>/<name>.yaml` that exists, method folders in sorted order.

    `methods` restricts to those folder names (an unknown name raises ValueError listing the known)."""
    if not os.path.isdir(config_root):
        raise ValueError(f"config folder {config_root!r} does not exist")
    found = sorted(d for d in os.listdir(config_root) if os.path.isdir(os.path.join(config_root, d)))
    if methods:
        unknown = sorted(set(methods) - set(found))
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; config folders in {config_root}: {found}")
        found = [m for m in found if m in set(methods)]
    entries = []
    for method in found:
        for name in names:
            stem = name[:-5] if name.endswith(".yaml") else name
            path = os.path.join(config_root, method, f"{stem}.yaml")
            if os.path.isfile(path):
                entries.append(BenchmarkEntry(f"{method}/{stem}", method, os.path.abspath(path)))
    return entries


def machine_info(device: str, threads: int) -> Dict[str, object]:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": threads, "device": device,
            "torch": torch.__version__, "python": platform.python_version()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/meminfo") as f:
            info["ram_gb"] = round(int(f.readline().split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def machine_string(info: Dict[str, object]) -> str:
    dev = info.get("gpu") or str(info.get("device", "?"))
    ram = f", {info['ram_gb']} GB RAM" if "ram_gb" in info else ""
    return (f"{info.get('cpu')} ({info.get('cores')} cores{ram}), torch {info.get('torch')} with "
            f"{info.get('torch_threads')} CPU threads, device {dev}")


def default_input_size(min_size_test: int, max_size_test: int) -> Tuple[int, int]:
    """A 16:9 video (YouTube-VIS's usual 720x1280) resized as the test mapper does: short side
    MIN_SIZE_TEST, long side at most MAX_SIZE_TEST. 360/1333 -> (360, 640); 96/128 -> (96, 128)."""
    return int(min_size_test), int(min(max_size_test, round(min_size_test * 16 / 9)))


# ------------------------------------------------------------------------------------------ children
def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 ** 3


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # kB -> GB (Linux)


def _emit(obj: dict) -> None:
    print(_MARKER + json.dumps(obj), flush=True)


def _start_memory_watchdog(limit_gb: float, interval_s: float = 0.02) -> None:
    """Stop this process (exit code 3) as soon as its resident memory passes `limit_gb`, so a probe
    that is over the budget never takes the machine's memory (checked every `interval_s`)."""

    def watch():
        while True:
            rss = _rss_gb()
            if rss > limit_gb:
                _emit({"error": f"resident memory {rss:.2f} GB passed the limit of {limit_gb:.2f} GB",
                       "over_budget": True, "peak_gb": rss})
                os._exit(3)
            time.sleep(interval_s)

    threading.Thread(target=watch, daemon=True).start()


def _build_cfg(config_file: str, opts: Sequence[str]):
    from vis_zoo.engine.setup import build_config

    return build_config(config_file, list(opts))


def _backbone_name(cfg) -> str:
    name = cfg.MODEL.BACKBONE.NAME
    if "resnet" in name.lower():
        return f"R-{cfg.MODEL.RESNETS.DEPTH}"
    return name.replace("build_", "").replace("_backbone", "")


def _dataset_is_synthetic(name: str) -> bool:
    from detectron2.data import MetadataCatalog

    try:
        return MetadataCatalog.get(name).get("synthetic_split", None) is not None
    except Exception:  # unregistered name: not a synthetic dataset
        return False


def _num_classes(cfg) -> int:
    from detectron2.data import MetadataCatalog

    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        try:
            classes = MetadataCatalog.get(name).get("thing_classes", None)
        except Exception:
            classes = None
        if classes:
            return len(classes)
    return 1


def config_facts(cfg) -> Dict[str, object]:
    """Facts of a built config shown in the table."""
    return {
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "backbone": _backbone_name(cfg),
        "train_datasets": list(cfg.DATASETS.TRAIN),
        "test_datasets": list(cfg.DATASETS.TEST),
        "synthetic_test": bool(cfg.DATASETS.TEST) and all(_dataset_is_synthetic(n) for n in cfg.DATASETS.TEST),
        "default_size": list(default_input_size(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)),
        "train_frames": int(cfg.INPUT.SAMPLING_FRAME_NUM),
        "ims_per_batch": int(cfg.SOLVER.IMS_PER_BATCH),
        "max_iter": int(cfg.SOLVER.MAX_ITER),
        "test_window_size": int(cfg.MODEL.VIS.TEST_WINDOW_SIZE),
        "test_chunk_size": int(cfg.MODEL.VIS.TEST_CHUNK_SIZE),
    }


def random_training_batch(num_videos: int, num_frames: int, height: int, width: int, num_classes: int,
                          seed: int = 0) -> List[dict]:
    """Training-mapper-like inputs: per video T random uint8 frames [3, H, W] and T `Instances` with two
    tracks (rectangles moving right; track 1 absent in frame 0 when T > 1, gt_ids -1 and empty mask)."""
    import torch
    from detectron2.structures import BitMasks, Instances

    g = torch.Generator().manual_seed(seed)
    batch = []
    for v in range(num_videos):
        images, instances = [], []
        for t in range(num_frames):
            images.append(torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8))
            masks = torch.zeros((2, height, width), dtype=torch.bool)
            ids = torch.tensor([0, 1])
            dx = (t * width) // (4 * max(1, num_frames))
            masks[0, height // 8: height // 2, width // 8 + dx: width // 2 + dx] = True
            if t == 0 and num_frames > 1:
                ids[1] = -1
            else:
                masks[1, height // 2: height - height // 8, width // 3: width // 3 + width // 4] = True
            inst = Instances((height, width))
            inst.gt_ids = ids
            inst.gt_classes = torch.tensor([v % num_classes, (v + 1) % num_classes], dtype=torch.int64)
            inst.gt_masks = BitMasks(masks)
            inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
            instances.append(inst)
        batch.append({"video_id": v, "height": height, "width": width, "length": num_frames,
                      "frame_idx": list(range(num_frames)), "file_names": [""] * num_frames,
                      "image": images, "instances": instances})
    return batch


def _sdpa_flop_jit(inputs, outputs) -> int:
    """aten::scaled_dot_product_attention: q [..., L, E], k [..., S, E], v [..., S, Ev] ->
    L*S*E (q k^T) + L*S*Ev (attention @ v) multiply-adds per batch/head (softmax not counted)."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def processed_frames(model, num_frames: int) -> int:
    """Frames a model actually runs on for a `num_frames`-frame video: `model.processed_frames(T)` when
    the model defines that hook (a fixed-clip model such as VisTR tiles a shorter video to its whole
    clip), else T. GFLOPs per frame divide by this, so that a 2-frame count of a 36-frame-clip model is
    not the cost of 36 frames spread over 2."""
    hook = getattr(model, "processed_frames", None)
    if hook is None:
        return int(num_frames)
    n = int(hook(int(num_frames)))
    if n < 1:
        raise ValueError(f"{type(model).__name__}.processed_frames({num_frames}) returned {n}, expected >= 1")
    return n


def count_gflops_per_frame(model, num_frames: int, height: int, width: int) -> Dict[str, object]:
    """fvcore FlopCountAnalysis of one inference call on a random T-frame video.

    Returns "gflops_per_video" (the whole call), "flops_frames" (T), "flops_processed_frames" (P, see
    `processed_frames`) and "gflops_per_frame" = gflops_per_video / P."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    from vis_zoo.zoo.speed import random_video

    class VideoToTensors(torch.nn.Module):
        """Traceable wrapper: frames [T, 3, H, W] -> scores and per-track mask sums (so every op that
        makes the outputs is part of the traced graph)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, frames):
            video = {"video_id": 0, "height": frames.shape[-2], "width": frames.shape[-1],
                     "length": frames.shape[0], "image": list(frames.unbind(0))}
            out = self.inner([video])[0]
            parts = [out["pred_scores"].float().reshape(-1)]
            parts += [m.float().sum().reshape(1) for m in out["pred_masks"] if isinstance(m, torch.Tensor)]
            return torch.cat(parts)

    device = next(model.parameters()).device
    frames = torch.stack(random_video(num_frames, height, width)["image"]).to(device)
    analysis = FlopCountAnalysis(VideoToTensors(model), (frames,))
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with torch.no_grad():
        total = analysis.total()
    unsupported = sorted(analysis.unsupported_ops().items(), key=lambda kv: -kv[1])
    processed = processed_frames(model, num_frames)
    return {"gflops_per_frame": total / 1e9 / processed, "gflops_per_video": total / 1e9,
            "flops_frames": num_frames, "flops_processed_frames": processed,
            "flops_counter": "fvcore FlopCountAnalysis (1 fused multiply-add = 1 flop) + SDPA handle",
            "flops_uncounted_ops": [k for k, _ in unsupported[:12]]}


def measure_train_step(cfg, model, *, iters: int, batch: int, height: int, width: int) -> Dict[str, object]:
    """Median seconds of forward + backward + optimizer step on a random batch (one warm-up step)."""
    import torch

    from vis_zoo.engine.trainer import build_optimizer

    device = torch.device(cfg.MODEL.DEVICE)
    model.train()
    optimizer = build_optimizer(cfg, model)
    frames = int(cfg.INPUT.SAMPLING_FRAME_NUM)
    data = random_training_batch(batch, frames, height, width, _num_classes(cfg))

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        losses = model(data)
        loss = sum(losses.values()) if isinstance(losses, dict) else losses
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step()  # warm-up, excluded
    times = [step() for _ in range(max(1, iters))]
    model.eval()
    return {"train_s_per_iter": statistics.median(times), "train_times_s": times, "train_batch": batch,
            "train_frames": frames, "train_size": [height, width]}


def child_model(spec: dict) -> dict:
    """Facts, parameters, GFLOPs per frame, training s/iter of one config (in this process)."""
    import torch
    from detectron2.modeling import build_model

    torch.set_num_threads(spec["threads"])
    opts = ["MODEL.DEVICE", spec["device"]] + list(spec.get("opts", []))
    cfg = _build_cfg(spec["config_file"], opts)
    out = {"facts": config_facts(cfg), "errors": {}}
    height, width = spec.get("size") or out["facts"]["default_size"]
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    out["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    out["trainable_params_m"] = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
    out["size"] = [height, width]
    if spec.get("flops", True):
        try:
            # dense masks so that the mask ops are traced (RLE output leaves the graph)
            cfg_dense = _build_cfg(spec["config_file"], opts + ["MODEL.VIS.OUTPUT_RLE", "False"])
            dense = build_model(cfg_dense).eval()
            dense.load_state_dict(model.state_dict())
            out.update(count_gflops_per_frame(dense, spec["frames"], height, width))
            del dense
        except Exception as e:  # report, keep the other numbers
            out["errors"]["flops"] = _short_error(e)
    return out


def child_train(spec: dict) -> dict:
    """Training seconds per iteration of one config (in this process)."""
    import torch
    from detectron2.modeling import build_model

    torch.set_num_threads(spec["threads"])
    cfg = _build_cfg(spec["config_file"], ["MODEL.DEVICE", spec["device"]] + list(spec.get("opts", [])))
    torch.manual_seed(0)
    model = build_model(cfg)
    height, width = spec["size"]
    return measure_train_step(cfg, model, iters=spec["train_iters"], batch=spec["train_batch"],
                              height=height, width=width)


def child_probe(spec: dict) -> dict:
    """One max-frames probe: `vis_zoo.zoo.speed.measure_speed` on a T-frame video as one window, under
    a memory watchdog (CPU) or a CUDA memory fraction (CUDA) at the budget."""
    import torch

    from vis_zoo.zoo.speed import measure_speed

    frames, budget = spec["frames"], spec["budget_gb"]
    cuda = spec["device"].startswith("cuda")
    if cuda:
        dev = torch.device(spec["device"])
        total = torch.cuda.get_device_properties(dev).total_memory / 1024 ** 3
        torch.cuda.set_per_process_memory_fraction(min(1.0, budget / total), dev)
    else:
        _start_memory_watchdog(budget)
    base = ["MODEL.DEVICE", spec["device"]] + list(spec.get("opts", []))
    joint = ["MODEL.VIS.TEST_WINDOW_SIZE", str(frames), "MODEL.VIS.TEST_WINDOW_STRIDE", str(frames)]
    note = ""
    try:
        from detectron2.modeling import build_model

        build_model(_build_cfg(spec["config_file"], base + joint))  # does the method accept one window of T?
        opts = base + joint
    except Exception as e:
        opts = base
        note = f"the method keeps its own test window ({_short_error(e)[:160]})"
    height, width = spec["size"]
    try:
        # one call, no warm-up: the peak memory of processing the video once is what is probed
        r = measure_speed(spec["config_file"], frames, height, width, threads=spec["threads"], repeats=1, opts=opts,
                          warmup=False)
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if "out of memory" not in str(e).lower():
            raise
        return {"frames": frames, "over_budget": True, "error": f"out of memory: {str(e)[:200]}", "note": note}
    peak = r.peak_cuda_gb if cuda else r.peak_rss_gb
    return {"frames": frames, "seconds": r.median_s, "peak_gb": peak, "over_budget": peak > budget, "note": note}


def _short_error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return text[:400]


def _child_main(kind: str, spec_json: str) -> int:
    spec = json.loads(spec_json)
    if spec.get("mem_limit_gb") and not spec["device"].startswith("cuda"):
        _start_memory_watchdog(spec["mem_limit_gb"])
    try:
        result = {"model": child_model, "train": child_train, "probe": child_probe}[kind](spec)
    except Exception as e:
        traceback.print_exc()
        _emit({"error": _short_error(e)})
        return 1
    _emit(result)
    return 0


def run_child(kind: str, spec: dict, *, threads: int, timeout_s: float) -> dict:
    """Run `python -m vis_zoo.zoo.benchmark --child KIND SPEC` and return its result dict; failures
    (exception, crash, kill, timeout) come back as {"error": ...}."""
    cmd = [sys.executable, "-m", "vis_zoo.zoo.benchmark", "--child", kind, json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s", "timeout": True}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARKER):
            return json.loads(line[len(_MARKER):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit code {proc.returncode}: {' | '.join(tail)[-400:]}",
            "over_budget": proc.returncode in (-9, 137)}  # SIGKILL: most likely the kernel's OOM killer


# ------------------------------------------------------------------------------------------ stages
def search_max_frames(probe: Callable[[int], dict], *, start: int, cap: int) -> Dict[str, object]:
    """Largest T with `probe(T)` within budget (probe returns a dict; "error" or over_budget = fail).

    T doubles from `start` (clipped to `cap`) until a failure or the cap, then bisects between the last
    success and the first failure to within max(1, 1/8 of the success)."""
    if start < 1 or cap < 1:
        raise ValueError(f"max-frames search needs start >= 1 and cap >= 1, got {start}, {cap}")
    probes = []

    def ok(t: int) -> bool:
        r = probe(t)
        probes.append(dict(r, frames=t))
        return "error" not in r and not r.get("over_budget", False)

    good, bad, t = 0, None, min(start, cap)
    while True:
        if ok(t):
            good = t
            if t >= cap:
                break
            t = min(2 * t, cap)
        else:
            bad = t
            break
    while bad is not None and bad - good > max(1, good // 8):
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    notes = sorted({p["note"] for p in probes if p.get("note")})
    errors = [p["error"] for p in probes if "error" in p and not p.get("over_budget")]
    return {"max_frames": good, "capped": bad is None, "first_failure": bad, "probes": probes,
            "note": "; ".join(notes), "probe_errors": errors[:3]}


def parse_train_metrics(metrics_path: str) -> Dict[str, object]:
    """AP, AP50, AP75, AR1, AR10 (percent) of the last evaluation in a detectron2 metrics.json, and the
    median logged seconds per training iteration ("time"). Raises ValueError naming the file."""
    if not os.path.isfile(metrics_path):
        raise ValueError(f"no metrics file {metrics_path!r} (training did not write one)")
    last_eval, times, iteration = None, [], None
    with open(metrics_path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{metrics_path}: line {n} is not JSON") from None
            if "segm/AP" in record:
                last_eval = record
            if "time" in record:
                times.append(float(record["time"]))
            iteration = record.get("iteration", iteration)
    if last_eval is None:
        raise ValueError(f"{metrics_path}: no evaluation record (no 'segm/AP' key)")
    out = {k: float(last_eval.get(f"segm/{k}", float("nan"))) for k in ACCURACY_KEYS}
    out["eval_iteration"] = last_eval.get("iteration")
    out["last_iteration"] = iteration
    if times:
        out["schedule_s_per_iter"] = statistics.median(times)
    return out


# detectron2's hooks.IterationTimer.after_train writes these two lines at the end of training (log.txt):
#   "Overall training speed: 1195 iterations in 0:09:58 (0.5004 s / it)"   (iterations after 5 warm-up ones)
#   "Total training time: 0:10:40 (0:00:42 on hooks)"                       (hooks = checkpoints, periodic evals)
# Durations are str(datetime.timedelta), so "1 day, 2:03:04" past 24 h.
_DURATION = r"(?:(\d+) days?, )?(\d+):(\d{2}):(\d{2})"
_TOTAL_TIME_RE = re.compile(r"Total training time: " + _DURATION)
_SESSION_START = "Command line arguments: "  # detectron2's default_setup logs it once per process
_SPEED_RE = re.compile(r"Overall training speed: (\d+) iterations in .*?\(([0-9.]+) s / it\)")


def parse_train_log(log_path: str) -> Dict[str, object]:
    """Training wall time from a detectron2 log.txt: "train_s" (seconds, the sum of the "Total training
    time" lines of the last process, i.e. after the last "Command line arguments" line: a resumed run
    that appended to the log counts its last session, a run with an initialisation stage
    (MODEL.INIT_STAGE_CONFIG) both stages; it excludes the final evaluation, which EvalHook runs after
    IterationTimer has logged), and "log_s_per_iter" / "log_timed_iters" from the last "Overall
    training speed" line when present. Raises ValueError naming
    the file when it is missing or has no "Total training time" line (training did not finish)."""
    if not os.path.isfile(log_path):
        raise ValueError(f"no training log {log_path!r}")
    total, speed = None, None
    with open(log_path, errors="replace") as f:
        for line in f:
            if _SESSION_START in line:  # a new process (e.g. a resumed run): count only the last one
                total, speed = None, None
            m = _TOTAL_TIME_RE.search(line)
            if m:
                days, h, mi, sec = (int(g or 0) for g in m.groups())
                total = (total or 0.0) + float(((days * 24 + h) * 60 + mi) * 60 + sec)
            m = _SPEED_RE.search(line)
            if m:
                speed = (int(m.group(1)), float(m.group(2)))
    if total is None:
        raise ValueError(f"{log_path}: no 'Total training time' line (detectron2 writes it when training "
                         "finishes; was the run stopped early?)")
    out: Dict[str, object] = {"train_s": total}
    if speed is not None:
        out["log_timed_iters"], out["log_s_per_iter"] = speed
    return out


def _read_run_config(cfg_path: str) -> Dict[str, object]:
    """A run's config.yaml as a dict ({} when the file is absent); ValueError naming it when unreadable."""
    if not os.path.isfile(cfg_path):
        return {}
    import yaml

    try:
        with open(cfg_path) as f:
            return yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{cfg_path}: not readable YAML ({str(e)[:200]})") from None


def accuracy_from_run(run_dir: str) -> Dict[str, object]:
    """The accuracy entry of a row, read from a finished `tools/train_net.py` run (nothing is trained).

    AP/AP50/AP75/AR1/AR10 from RUN_DIR/metrics.json (`parse_train_metrics`), "wall_s" = the log's
    training time (`parse_train_log` on RUN_DIR/log.txt; without the final evaluation, so
    "wall_includes_final_eval" is False), "source" = the run dir (relative to the repository when
    inside it), and from RUN_DIR/config.yaml (written by detectron2's default_setup) when present:
    "max_iter" (SOLVER.MAX_ITER of the run), "meta_architecture" and "dataset" (DATASETS.TEST[0]);
    "init_stage_max_iter" from RUN_DIR/init_stage/config.yaml when the run had an init stage.
    Raises ValueError naming the missing or unreadable file."""
    if not os.path.isdir(run_dir):
        raise ValueError(f"run directory {run_dir!r} does not exist")
    out = parse_train_metrics(os.path.join(run_dir, "metrics.json"))
    log = parse_train_log(os.path.join(run_dir, "log.txt"))
    out.update(wall_s=log.pop("train_s"), wall_includes_final_eval=False, **log)
    cfg = _read_run_config(os.path.join(run_dir, "config.yaml"))
    solver, model, datasets = (cfg.get(k) or {} for k in ("SOLVER", "MODEL", "DATASETS"))
    if "MAX_ITER" in solver:
        out["max_iter"] = int(solver["MAX_ITER"])
    if model.get("META_ARCHITECTURE"):
        out["meta_architecture"] = model["META_ARCHITECTURE"]
    if datasets.get("TEST"):
        out["dataset"] = list(datasets["TEST"])[0]
    from vis_zoo.engine.init_stage import INIT_STAGE_DIR  # where MODEL.INIT_STAGE_CONFIG's stage ran

    stage_solver = _read_run_config(os.path.join(run_dir, INIT_STAGE_DIR, "config.yaml")).get("SOLVER") or {}
    if "MAX_ITER" in stage_solver:
        out["init_stage_max_iter"] = int(stage_solver["MAX_ITER"])
    path = os.path.abspath(run_dir)
    out["source"] = os.path.relpath(path, REPO_ROOT) if path.startswith(REPO_ROOT + os.sep) else path
    return out


def accuracy_from_runs(sources: Dict[str, str]) -> Dict[str, Dict[str, object]]:
    """`accuracy_from_run` for each {row key: run dir}; a failure is a ValueError naming the key."""
    out = {}
    for key, run_dir in sources.items():
        try:
            out[key] = accuracy_from_run(run_dir)
        except ValueError as e:
            raise ValueError(f"--accuracy-from {key}={run_dir}: {e}") from None
    return out


def apply_accuracy_from(data: Dict[str, object], accuracy: Dict[str, Dict[str, object]]) -> Dict[str, object]:
    """Put each `accuracy_from_runs` entry into its row of the results `data` (in place; returned).

    The row must exist (a ValueError names the key and lists the rows), and when both are known the
    run's MODEL.META_ARCHITECTURE must be the row's (a run of another method is a ValueError)."""
    rows = data["rows"]
    for key, acc in accuracy.items():
        row = rows.get(key)
        if row is None:
            raise ValueError(f"--accuracy-from {key}: no row {key!r} in the results (rows: {sorted(rows)}); "
                             "benchmark the config first (e.g. --stages model) or fix the key")
        facts = row.get("facts", {})
        arch, run_arch = facts.get("meta_architecture"), acc.get("meta_architecture")
        if arch and run_arch and arch != run_arch:
            raise ValueError(f"--accuracy-from {key}: the run {acc.get('source')} trained {run_arch}, "
                             f"but row {key!r} is {arch}")
        acc = dict(acc)
        if "max_iter" not in acc and "max_iter" in facts:
            acc["max_iter"] = facts["max_iter"]  # no config.yaml in the run: the row config's schedule
        if "dataset" not in acc and facts.get("test_datasets"):
            acc["dataset"] = facts["test_datasets"][0]
        row["accuracy"] = acc
        row.setdefault("errors", {}).pop("accuracy", None)
        row["updated"] = _now()
    return data


def run_accuracy(config_file: str, output_dir: str, *, device: str, threads: int, opts: Sequence[str] = (),
                 timeout_s: float = 24 * 3600, train_script: Optional[str] = None) -> Dict[str, object]:
    """Train + evaluate one config with tools/train_net.py in a subprocess; metrics and wall time."""
    script = train_script or os.path.join(REPO_ROOT, "tools", "train_net.py")
    os.makedirs(output_dir, exist_ok=True)
    metrics = os.path.join(output_dir, "metrics.json")
    if os.path.exists(metrics):
        os.remove(metrics)  # a stale file from an earlier run must not be read as this run's result
    cmd = [sys.executable, script, "--config-file", config_file, "OUTPUT_DIR", output_dir,
           "MODEL.DEVICE", device, *opts]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    log_path = os.path.join(output_dir, "benchmark_train_log.txt")
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s,
                                  cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"training timed out after {timeout_s:.0f} s (log: {log_path})"}
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read().strip().splitlines()[-3:]
        return {"error": f"train_net.py exit code {proc.returncode}: {' | '.join(tail)[-400:]}", "wall_s": wall}
    try:
        result = parse_train_metrics(metrics)
    except ValueError as e:
        return {"error": str(e), "wall_s": wall}
    result.update({"wall_s": wall, "train_opts": list(opts)})
    return result


# ------------------------------------------------------------------------------------------ results
def load_results(path: str) -> Dict[str, object]:
    """The results file ({"version": 1, "rows": {key: row}}), or an empty one if missing."""
    if not os.path.exists(path):
        return {"version": 1, "rows": {}}
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"benchmark results file {path!r} is not valid JSON ({e}); move it away to start anew")
    if not isinstance(data, dict) or not isinstance(data.get("rows"), dict):
        raise ValueError(f"benchmark results file {path!r} has no 'rows' mapping")
    return data


def save_results(path: str, data: Dict[str, object]) -> None:
    from vis_zoo.utils.io import atomic_write_json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, data)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def benchmark_entry(entry: BenchmarkEntry, settings: BenchmarkSettings, stages: Sequence[str], row: dict,
                    work_dir: str, step: Callable[[str], None], opts: Sequence[str] = (),
                    accuracy_from: Optional[Dict[str, dict]] = None) -> dict:
    """Run the requested stages of one row, updating `row` (a previous result, possibly empty).

    A row in `accuracy_from` (`accuracy_from_runs` output) takes its accuracy from that finished run
    instead of the accuracy stage's training."""
    row.update({"key": entry.key, "method": entry.method, "config": os.path.relpath(entry.config_file, REPO_ROOT),
                "machine": machine_info(settings.device, settings.threads),
                "settings": {k: v for k, v in asdict(settings).items() if k != "accuracy_opts"},
                "updated": _now()})
    row.setdefault("errors", {})
    for stage in stages:
        row["errors"].pop(stage, None)
    common = {"config_file": entry.config_file, "device": settings.device, "threads": settings.threads,
              "opts": list(opts), "mem_limit_gb": settings.mem_limit_gb}

    # stage "model" always runs when its facts are missing: the other stages need the input size
    if "model" in stages or "facts" not in row:
        step(f"{entry.key}: build, params, GFLOPs")
        res = run_child("model", dict(common, frames=settings.flops_frames, size=settings.size,
                                      flops="model" in stages),
                        threads=settings.threads, timeout_s=settings.child_timeout_s)
        if "error" in res:
            row["errors"]["model"] = res["error"]
            row["build_error"] = res["error"]
            return row
        row.pop("build_error", None)
        for stage_key, err in res.pop("errors", {}).items():
            row["errors"][stage_key] = err
        if "model" not in stages:  # only the facts were wanted
            res = {k: res[k] for k in ("facts", "size", "params_m", "trainable_params_m")}
        row.update(res)
    size = list(settings.size or row["facts"]["default_size"])
    row["size"] = size

    if "speed" in stages:
        from vis_zoo.zoo.speed import measure_speed_in_subprocess

        curve = []
        frames_list = sorted(set(settings.curve_frames) | {settings.frames})
        for t in frames_list:
            step(f"{entry.key}: inference T={t}")
            try:
                r = measure_speed_in_subprocess(entry.config_file, t, size[0], size[1], threads=settings.threads,
                                                repeats=settings.repeats, opts=["MODEL.DEVICE", settings.device, *opts],
                                                timeout=settings.child_timeout_s)
                peak = r.peak_cuda_gb if r.peak_cuda_gb is not None else r.peak_rss_gb
                curve.append({"frames": t, "seconds": r.median_s, "times_s": r.times_s, "fps": r.fps,
                              "ms_per_frame": 1000 * r.median_s / t, "peak_gb": peak,
                              "peak_rss_gb": r.peak_rss_gb, "load_avg_1min": r.load_avg_1min})
            except Exception as e:  # subprocess failure / timeout: keep the other points
                curve.append({"frames": t, "error": _short_error(e)[-400:]})
        row["curve"] = curve
        main = next((p for p in curve if p["frames"] == settings.frames), None)
        row["speed"] = dict(main) if main else {"error": "no measurement"}
        if main and "error" in main:
            row["errors"]["speed"] = main["error"]

    if "max_frames" in stages:
        def probe(t: int) -> dict:
            step(f"{entry.key}: max frames, probe T={t}")
            return run_child("probe", dict(common, frames=t, size=size, budget_gb=settings.budget_gb),
                             threads=settings.threads, timeout_s=settings.child_timeout_s)

        res = search_max_frames(probe, start=settings.max_frames_start, cap=settings.max_frames_cap)
        res.update({"budget_gb": settings.budget_gb, "cap": settings.max_frames_cap})
        row["max_frames"] = res
        if res["max_frames"] == 0 and res["probe_errors"]:
            row["errors"]["max_frames"] = res["probe_errors"][0]

    if "train_speed" in stages:
        step(f"{entry.key}: training s/iter")
        res = run_child("train", dict(common, size=size, train_iters=settings.train_iters,
                                      train_batch=settings.train_batch),
                        threads=settings.threads, timeout_s=settings.child_timeout_s)
        for k in ("train_s_per_iter", "train_times_s", "train_batch", "train_frames", "train_size"):
            row.pop(k, None)
        if "error" in res:
            row["errors"]["train_speed"] = res["error"]
        else:
            row.update(res)

    if accuracy_from and entry.key in accuracy_from:
        apply_accuracy_from({"rows": {entry.key: row}}, {entry.key: accuracy_from[entry.key]})
    elif "accuracy" in stages:
        if not row["facts"].get("synthetic_test"):
            row["accuracy"] = {"skipped": "test set is not synthetic (needs its dataset; see the README)"}
        else:
            step(f"{entry.key}: train + evaluate (accuracy)")
            out_dir = os.path.join(work_dir, entry.key.replace("/", "__"))
            acc_opts = list(settings.accuracy_opts) + list(opts)
            res = run_accuracy(entry.config_file, out_dir, device=settings.device, threads=settings.threads,
                               opts=acc_opts, timeout_s=settings.child_timeout_s * 8)
            res["dataset"] = row["facts"]["test_datasets"][0]
            row["accuracy"] = res
            if "error" in res:
                row["errors"]["accuracy"] = res["error"]
    row["updated"] = _now()
    return row


def count_steps(settings: BenchmarkSettings, stages: Sequence[str]) -> int:
    """Progress-bar steps per row (max-frames probes are estimated by the doubling count)."""
    n = 1 + ("train_speed" in stages)
    if "speed" in stages:
        n += len(set(settings.curve_frames) | {settings.frames})
    if "max_frames" in stages:
        t, probes = min(settings.max_frames_start, settings.max_frames_cap), 1
        while t < settings.max_frames_cap:
            t, probes = min(2 * t, settings.max_frames_cap), probes + 1
        n += probes
    if "accuracy" in stages:
        n += 1
    return n


def run_benchmark(entries: Sequence[BenchmarkEntry], settings: BenchmarkSettings, *, results_path: str,
                  stages: Sequence[str] = STAGES, work_dir: Optional[str] = None, opts: Sequence[str] = (),
                  progress: bool = True, on_row_done: Optional[Callable[[dict], None]] = None,
                  accuracy_from: Optional[Dict[str, dict]] = None) -> Dict[str, object]:
    """Benchmark every entry; each row is merged into the results file as soon as it is done (rows not
    benchmarked now are kept), so a partial rerun (a subset of methods or stages) updates only those.
    `accuracy_from` ({row key: `accuracy_from_run` output}): those rows' accuracy comes from a finished
    run (never retrained); keys that are not benchmarked now are filled into their existing rows."""
    from tqdm import tqdm

    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    work_dir = work_dir or os.path.join(os.path.dirname(os.path.abspath(results_path)), "runs")
    data = load_results(results_path)
    total = len(entries) * count_steps(settings, stages)
    bar = tqdm(total=total, desc="benchmark", unit="step", disable=not progress, dynamic_ncols=True)

    def step(text: str) -> None:
        bar.set_description_str(text[:70])
        bar.update(1)

    for entry in entries:
        previous = dict(data["rows"].get(entry.key, {}))
        row = benchmark_entry(entry, settings, stages, previous, work_dir, step, opts, accuracy_from)
        data = load_results(results_path)  # re-read: another run may have saved rows meanwhile
        data["rows"][entry.key] = row
        save_results(results_path, data)
        if on_row_done is not None:
            on_row_done(data)
    rest = {k: v for k, v in (accuracy_from or {}).items() if k not in {e.key for e in entries}}
    if rest:
        data = apply_accuracy_from(load_results(results_path), rest)
        save_results(results_path, data)
    bar.n = bar.total
    bar.close()
    return data


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="internal: one benchmark measurement in a fresh process")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC_JSON"), required=True)
    args = parser.parse_args()
    sys.exit(_child_main(*args.child))
