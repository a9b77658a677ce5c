"""The measurements of the model-zoo benchmark, each run in a fresh process by `vis_zoo.zoo.child`.

child "model"  config facts (method, backbone, datasets, default input size), parameters, GFLOPs per
               frame: fvcore's FlopCountAnalysis of one inference call on a `frames`-frame video,
               divided by the frames the model processed (`processed_frames`: more than T for a
               fixed-clip model such as VisTR). fvcore counts one fused multiply-add as one flop; a
               handle adds aten::scaled_dot_product_attention, which fvcore skips; element-wise ops
               are not counted. The JIT tracer keeps every intermediate tensor alive until the trace
               ends (an R-50 at 360x640 needs ~2 GB per traced frame), hence a small T here.
child "train"  training seconds per iteration: forward + backward + optimizer step on a random batch
               of INPUT.SAMPLING_FRAME_NUM-frame videos (`random_training_batch`), warm-up excluded.
child "probe"  one max-frames probe: the whole T-frame video as one window, one call, under a memory
               watchdog (CPU) or a CUDA memory fraction at the budget. `search_max_frames` (run in
               the parent) doubles T until a probe fails, then bisects.
"""

import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

from .child import short_error, start_memory_watchdog
from .memory import GB

__all__ = [
    "CHILD_KINDS",
    "child_model",
    "child_probe",
    "child_train",
    "config_facts",
    "count_gflops_per_frame",
    "default_input_size",
    "measure_train_step",
    "processed_frames",
    "random_training_batch",
    "search_max_frames",
]


def default_input_size(min_size_test: int, max_size_test: int) -> Tuple[int, int]:
    """A 16:9 video (YouTube-VIS's usual 720x1280) resized as the test mapper does: short side
    MIN_SIZE_TEST, long side at most MAX_SIZE_TEST. 360/1333 -> (360, 640); 96/128 -> (96, 128)."""
    return int(min_size_test), int(min(max_size_test, round(min_size_test * 16 / 9)))


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


def config_facts(cfg) -> Dict[str, object]:
    """Facts of a built config shown in the table."""
    return {
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "backbone": _backbone_name(cfg),
        "train_datasets": list(cfg.DATASETS.TRAIN),
        "test_datasets": list(cfg.DATASETS.TEST),
        "synthetic_test": bool(cfg.DATASETS.TEST)
        and all(_dataset_is_synthetic(n) for n in cfg.DATASETS.TEST),
        "default_size": list(default_input_size(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)),
        "train_frames": int(cfg.INPUT.SAMPLING_FRAME_NUM),
        "ims_per_batch": int(cfg.SOLVER.IMS_PER_BATCH),
        "max_iter": int(cfg.SOLVER.MAX_ITER),
        "test_window_size": int(cfg.MODEL.VIS.TEST_WINDOW_SIZE),
        "test_chunk_size": int(cfg.MODEL.VIS.TEST_CHUNK_SIZE),
    }


def random_training_batch(
    num_videos: int, num_frames: int, height: int, width: int, num_classes: int, seed: int = 0
) -> List[dict]:
    """Training-mapper-like inputs: per video T random uint8 frames [3, H, W] and T `Instances` with
    two tracks (rectangles moving right; track 1 absent in frame 0 when T > 1, gt_ids -1 and empty
    mask).
    """
    import torch
    from detectron2.structures import BitMasks, Instances

    from vis_zoo.zoo.speed import video_input

    g = torch.Generator().manual_seed(seed)
    batch = []
    for v in range(num_videos):
        images, instances = [], []
        for t in range(num_frames):
            images.append(torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8))
            masks = torch.zeros((2, height, width), dtype=torch.bool)
            ids = torch.tensor([0, 1])
            dx = (t * width) // (4 * max(1, num_frames))
            masks[0, height // 8 : height // 2, width // 8 + dx : width // 2 + dx] = True
            if t == 0 and num_frames > 1:
                ids[1] = -1
            else:
                masks[
                    1, height // 2 : height - height // 8, width // 3 : width // 3 + width // 4
                ] = True
            inst = Instances((height, width))
            inst.gt_ids = ids
            inst.gt_classes = torch.tensor(
                [v % num_classes, (v + 1) % num_classes], dtype=torch.int64
            )
            inst.gt_masks = BitMasks(masks)
            inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
            instances.append(inst)
        batch.append(video_input(v, images, height, width, instances))
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
    """Frames a model actually runs on for a `num_frames`-frame video: `model.processed_frames(T)`
    when the model defines that hook (a fixed-clip model such as VisTR tiles a shorter video to its
    whole clip), else T. GFLOPs per frame divide by this, so that a 2-frame count of a 36-frame-clip
    model is not the cost of 36 frames spread over 2."""
    hook = getattr(model, "processed_frames", None)
    if hook is None:
        return int(num_frames)
    n = int(hook(int(num_frames)))
    if n < 1:
        raise ValueError(
            f"{type(model).__name__}.processed_frames({num_frames}) returned {n}, expected >= 1"
        )
    return n


def count_gflops_per_frame(model, num_frames: int, height: int, width: int) -> Dict[str, object]:
    """fvcore FlopCountAnalysis of one inference call on a random T-frame video.

    Returns "gflops_per_video" (the whole call), "flops_frames" (T), "flops_processed_frames" (P,
    see `processed_frames`) and "gflops_per_frame" = gflops_per_video / P."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    from vis_zoo.zoo.speed import random_video

    class VideoToTensors(torch.nn.Module):
        """Traceable wrapper: frames [T, 3, H, W] -> scores and per-track mask sums (so every op
        that makes the outputs is part of the traced graph)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, frames):
            video = {
                "video_id": 0,
                "height": frames.shape[-2],
                "width": frames.shape[-1],
                "length": frames.shape[0],
                "image": list(frames.unbind(0)),
            }
            out = self.inner([video])[0]
            parts = [out["pred_scores"].float().reshape(-1)]
            parts += [
                m.float().sum().reshape(1) for m in out["pred_masks"] if isinstance(m, torch.Tensor)
            ]
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
    return {
        "gflops_per_frame": total / 1e9 / processed,
        "gflops_per_video": total / 1e9,
        "flops_frames": num_frames,
        "flops_processed_frames": processed,
        "flops_counter": "fvcore FlopCountAnalysis (1 fused multiply-add = 1 flop) + SDPA handle",
        "flops_uncounted_ops": [k for k, _ in unsupported[:12]],
    }


def measure_train_step(
    cfg, model, *, iters: int, batch: int, height: int, width: int
) -> Dict[str, object]:
    """Median seconds of forward + backward + optimizer step on a random batch (one warm-up
    step)."""
    import torch

    from vis_zoo.config import num_classes_from_config
    from vis_zoo.engine.trainer import build_optimizer

    device = torch.device(cfg.MODEL.DEVICE)
    model.train()
    optimizer = build_optimizer(cfg, model)
    frames = int(cfg.INPUT.SAMPLING_FRAME_NUM)
    data = random_training_batch(batch, frames, height, width, num_classes_from_config(cfg))

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
    return {
        "train_s_per_iter": statistics.median(times),
        "train_times_s": times,
        "train_batch": batch,
        "train_frames": frames,
        "train_size": [height, width],
    }


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
            out["errors"]["flops"] = short_error(e)
    return out


def child_train(spec: dict) -> dict:
    """Training seconds per iteration of one config (in this process)."""
    import torch
    from detectron2.modeling import build_model

    torch.set_num_threads(spec["threads"])
    cfg = _build_cfg(
        spec["config_file"], ["MODEL.DEVICE", spec["device"]] + list(spec.get("opts", []))
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    height, width = spec["size"]
    return measure_train_step(
        cfg, model, iters=spec["train_iters"], batch=spec["train_batch"], height=height, width=width
    )


def child_probe(spec: dict) -> dict:
    """One max-frames probe: `vis_zoo.zoo.speed.measure_speed` on a T-frame video as one window,
    under a memory watchdog (CPU) or a CUDA memory fraction (CUDA) at the budget."""
    import torch

    from vis_zoo.zoo.speed import measure_speed

    frames, budget = spec["frames"], spec["budget_gb"]
    cuda = spec["device"].startswith("cuda")
    if cuda:
        dev = torch.device(spec["device"])
        total = torch.cuda.get_device_properties(dev).total_memory / GB
        torch.cuda.set_per_process_memory_fraction(min(1.0, budget / total), dev)
    else:
        start_memory_watchdog(budget)
    base = ["MODEL.DEVICE", spec["device"]] + list(spec.get("opts", []))
    joint = ["MODEL.VIS.TEST_WINDOW_SIZE", str(frames), "MODEL.VIS.TEST_WINDOW_STRIDE", str(frames)]
    note = ""
    try:
        from detectron2.modeling import build_model

        build_model(
            _build_cfg(spec["config_file"], base + joint)
        )  # does the method accept one window of T?
        opts = base + joint
    except Exception as e:
        opts = base
        note = f"the method keeps its own test window ({short_error(e)[:160]})"
    height, width = spec["size"]
    try:
        # one call, no warm-up: the peak memory of processing the video once is what is probed
        r = measure_speed(
            spec["config_file"],
            frames,
            height,
            width,
            threads=spec["threads"],
            repeats=1,
            opts=opts,
            warmup=False,
        )
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if "out of memory" not in str(e).lower():
            raise
        return {
            "frames": frames,
            "over_budget": True,
            "error": f"out of memory: {str(e)[:200]}",
            "note": note,
        }
    peak = r.peak_cuda_gb if cuda else r.peak_rss_gb
    return {
        "frames": frames,
        "seconds": r.median_s,
        "peak_gb": peak,
        "over_budget": peak > budget,
        "note": note,
    }


def search_max_frames(probe: Callable[[int], dict], *, start: int, cap: int) -> Dict[str, object]:
    """Largest T with `probe(T)` within budget (probe returns a dict; "error" or over_budget =
    fail).

    T doubles from `start` (clipped to `cap`) until a failure or the cap, then bisects between the
    last success and the first failure to within max(1, 1/8 of the success)."""
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
    return {
        "max_frames": good,
        "capped": bad is None,
        "first_failure": bad,
        "probes": probes,
        "note": "; ".join(notes),
        "probe_errors": errors[:3],
    }


# the measurements a child process can run (`python -m vis_zoo.zoo.child --child KIND SPEC_JSON`)
CHILD_KINDS: Dict[str, Callable[[dict], dict]] = {
    "model": child_model,
    "train": child_train,
    "probe": child_probe,
}
