"""Bounded-memory video inference on the Mask2Former frame detector, shared by VITA and MinVIS.

Both methods run the detector over a video's frames in small chunks and keep, per frame, only its
query vectors (a few hundred floats per query) and one map of mask features [C, H/4, W/4]; the /4
mask logits of every query (Q·H/4·W/4 floats per frame) are never materialised. Once the tracks are
known, `render_video_masks` dots each track's mask embedding with the stored features a few frames
at a time and writes binary masks at the output size.

    check_detector_pass_settings(chunk_size, cpu_pixels_per_pass, feature_store)  # at build
    detected = run_frame_detector(frames, backbone=..., head=..., chunk_size=18, cpu_pixels_per_pass=...,
                                  feature_store="auto", project_mask_features=..., on_chunk=collect)
    scores, labels, query_idx = top_query_class_pairs(class_logits, k)
    masks, mask_scores = render_video_masks(embed[query_idx], detected.mask_features, ...)
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vis_zoo.modeling.backbone import normalize_and_pad
from vis_zoo.modeling.postprocessing import encode_rle

__all__ = ["feature_store_device", "frames_per_detector_pass", "check_detector_pass_settings", "DetectedFrames",
           "run_frame_detector", "top_query_class_pairs", "render_video_masks"]

# Up to this many frames the mask features stay on the model's device with the "auto" store (as the
# official VITA and MinVIS keep a whole 36-frame window there); longer videos keep them on the CPU.
AUTO_STORE_MAX_FRAMES_ON_DEVICE = 36


def feature_store_device(mode: str, device: torch.device, num_frames: int) -> torch.device:
    """Where per-frame mask features are kept: "device", "cpu" or "auto" (device up to 36 frames)."""
    if mode == "cpu":
        return torch.device("cpu")
    if mode == "device":
        return device
    if mode == "auto":
        return device if num_frames <= AUTO_STORE_MAX_FRAMES_ON_DEVICE else torch.device("cpu")
    raise ValueError(f"feature store must be auto/device/cpu, got {mode!r}")


def frames_per_detector_pass(frame_hw: Tuple[int, int], device: torch.device, chunk_size: int,
                             cpu_pixels_per_pass: int) -> int:
    """Frames per detector pass: `chunk_size` on CUDA; on CPU as many frames of `frame_hw` as fit in
    `cpu_pixels_per_pass` (at least 1, at most `chunk_size`).

    Why a pixel budget on CPU: a pass over many 360x640 frames makes temporaries of 100-350 MB (the
    pixel decoder's FFN hidden, the /4 maps) that glibc maps fresh for every allocation (page faults
    on first touch), while temporaries under its 32 MB mmap threshold are reused; small frames, on the
    other hand, run fastest in large passes (per-pass overhead). Outputs do not depend on it.
    """
    if chunk_size < 1 or cpu_pixels_per_pass < 1:
        raise ValueError(f"detector pass sizes must be >= 1, got {chunk_size} frames and "
                         f"{cpu_pixels_per_pass} pixels")
    if device.type != "cpu":
        return chunk_size
    pixels = max(1, int(frame_hw[0]) * int(frame_hw[1]))
    return max(1, min(chunk_size, cpu_pixels_per_pass // pixels))


def check_detector_pass_settings(chunk_size: int, cpu_pixels_per_pass: int, feature_store: str) -> None:
    """Raise a ValueError naming the config key (MODEL.VIS.TEST_CHUNK_SIZE, TEST_CHUNK_PIXELS_CPU,
    TEST_FEATURE_STORE) when a test-time detector setting is invalid."""
    if chunk_size < 1 or cpu_pixels_per_pass < 1:
        raise ValueError(f"MODEL.VIS.TEST_CHUNK_SIZE and MODEL.VIS.TEST_CHUNK_PIXELS_CPU must be >= 1, got "
                         f"{chunk_size} and {cpu_pixels_per_pass}")
    if feature_store not in ("auto", "device", "cpu"):
        raise ValueError(f"MODEL.VIS.TEST_FEATURE_STORE must be auto/device/cpu, got {feature_store!r}")


@dataclass
class DetectedFrames:
    """What `run_frame_detector` keeps of a video.

    mask_features: [T, C, h4, w4] on the store device (the projected /4 pixel features).
    padded_hw: the detector's padded input size; image_hw: the frames' unpadded size.
    """
    mask_features: Tensor
    padded_hw: Tuple[int, int]
    image_hw: Tuple[int, int]


@torch.no_grad()
def run_frame_detector(frames: Sequence[Tensor], *, backbone: nn.Module, head: nn.Module, pixel_mean: Tensor,
                       pixel_std: Tensor, size_divisibility: int, chunk_size: int, cpu_pixels_per_pass: int,
                       feature_store: str, project_mask_features: Callable[[Tensor], Tensor],
                       on_chunk: Callable[[int, Dict[str, Tensor]], None],
                       num_frame_query_layers: int = 1) -> DetectedFrames:
    """Backbone + Mask2Former head (`head.forward_queries`) over the frames, a few at a time.

    The model's device is `pixel_mean`'s; frames per pass come from `frames_per_detector_pass`
    (`chunk_size` on CUDA, the `cpu_pixels_per_pass` budget on CPU) and the mask features are kept
    where `feature_store_device(feature_store, ...)` says.

    Args:
        frames: T tensors [3, H, W] (one size for the whole video).
        project_mask_features: F4 [t, C4, h4, w4] -> the stored per-frame features [t, C, h4, w4].
        on_chunk: called as on_chunk(first_frame_index, out) with the head's query outputs for the
            chunk: "frame_queries" [L, t, Q, C] and "pred_logits" [t, Q, K+1].
    Raises:
        ValueError when frames do not share one size (naming the frames).
    """
    device = pixel_mean.device
    chunk_size = frames_per_detector_pass(tuple(frames[0].shape[-2:]), device, chunk_size, cpu_pixels_per_pass)
    store_device = feature_store_device(feature_store, device, len(frames))
    mask_features = None
    padded_hw = image_hw = None
    for start in range(0, len(frames), chunk_size):
        chunk = frames[start:start + chunk_size]
        images = normalize_and_pad(chunk, pixel_mean, pixel_std, size_divisibility)
        # channels-last frames: the same convolutions, ~1.3x faster on CPU (oneDNN) and on
        # tensor-core GPUs; only float rounding changes.
        features = backbone(images.tensor.contiguous(memory_format=torch.channels_last))
        out = head.forward_queries(features, num_frame_query_layers=num_frame_query_layers)
        del features
        on_chunk(start, out)
        chunk_features = project_mask_features(out["pixel_features"])
        if mask_features is None:
            # One [T, C, h4, w4] buffer filled chunk by chunk: collecting chunks in a list and
            # concatenating them at the end would hold every frame's features twice at the peak.
            mask_features = chunk_features.new_empty((len(frames), *chunk_features.shape[1:]), device=store_device)
        elif chunk_features.shape[1:] != mask_features.shape[1:]:
            raise ValueError(f"video frames must share one size: frames {start}..{start + len(chunk) - 1} give "
                             f"mask features {tuple(chunk_features.shape[1:])}, earlier frames "
                             f"{tuple(mask_features.shape[1:])}")
        mask_features[start:start + len(chunk)] = chunk_features
        padded_hw, image_hw = tuple(images.tensor.shape[-2:]), tuple(images.image_sizes[0])
        del out, images, chunk_features
    return DetectedFrames(mask_features, padded_hw, image_hw)


def top_query_class_pairs(class_logits: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The k best (query, class) pairs by softmax probability over the flattened Q x K foreground
    classes: a query may be kept with several classes (VITA's and MinVIS's test-time selection).

    Args:
        class_logits: [Q, K+1] (last = no object).
    Returns:
        (scores [k'] sorted descending, labels long [k'], query indices long [k']), k' = min(k, Q*K).
    """
    scores = class_logits.softmax(-1)[:, :-1]
    num_classes = scores.shape[1]
    top_scores, top_idx = scores.flatten().topk(min(k, scores.numel()), sorted=True)
    return top_scores, top_idx % num_classes, torch.div(top_idx, num_classes, rounding_mode="floor")


@torch.no_grad()
def render_video_masks(mask_embed: Tensor, mask_features: Tensor, *, padded_hw: Tuple[int, int],
                       image_hw: Tuple[int, int], output_hw: Tuple[int, int], frames_per_step: int,
                       output_rle: bool, device: torch.device) -> Tuple[List[object], Tensor]:
    """Binary masks of k tracks over T frames, computed `frames_per_step` frames at a time.

    Logits (mask embedding · features at /4) are resized to the padded input, cropped to the image,
    resized to the output size and thresholded at 0, as Mask2Former-based methods do.

    Args:
        mask_embed: [k, C] (one embedding per track for all frames, as VITA) or [T, k, C] (one per
            frame, as MinVIS).
        mask_features: [T, C, h4, w4] (any device; moved to `device` step by step).
    Returns:
        (per track a bool [T, H_out, W_out] cpu tensor, or a list of T RLE dicts with output_rle;
         mean foreground probability inside each track's mask at the input size, float [k]: the
         Mask2Former mask score, 0 for an empty mask).
    """
    num_frames = mask_features.shape[0]
    per_frame = mask_embed.dim() == 3
    if per_frame and mask_embed.shape[0] != num_frames:
        raise ValueError(f"render_video_masks: {mask_embed.shape[0]} frames of embeddings for {num_frames} "
                         "frames of mask features")
    k = mask_embed.shape[-2]
    numerator = torch.zeros(k, dtype=torch.float32, device=device)
    denominator = torch.zeros(k, dtype=torch.float32, device=device)
    track_masks: List[list] = [[] for _ in range(k)]
    step = max(1, frames_per_step)
    for start in range(0, num_frames, step):
        feats = mask_features[start:start + step].to(device)
        t_chunk, _, h4, w4 = feats.shape
        embed = mask_embed[start:start + step].to(device) if per_frame else mask_embed.to(device)
        # [k, C] @ [t, C, h·w] (or [t, k, C] @ [t, C, h·w]) -> [t, k, h·w]: a batched matmul on the
        # features as they are stored (an einsum to "kthw" first copies them into a permuted layout)
        logits = torch.matmul(embed, feats.flatten(2)).view(t_chunk, k, h4, w4).transpose(0, 1)
        logits = F.interpolate(logits, size=padded_hw, mode="bilinear", align_corners=False)
        logits = logits[:, :, : image_hw[0], : image_hw[1]]
        hard = logits > 0.0  # = sigmoid > 0.5
        numerator += (logits.sigmoid().flatten(1) * hard.flatten(1)).sum(1)
        denominator += hard.flatten(1).sum(1)
        if tuple(output_hw) == tuple(image_hw):
            # a bilinear resize to the same size (align_corners=False) is the identity: skip it
            binary = hard.cpu()
        else:
            binary = (F.interpolate(logits, size=tuple(output_hw), mode="bilinear", align_corners=False) > 0.0).cpu()
        for q in range(k):
            if output_rle:
                track_masks[q].extend(encode_rle(m) for m in binary[q])
            else:
                track_masks[q].append(binary[q])
        del logits, hard, binary
    masks = track_masks if output_rle else [
        torch.cat(m) if m else torch.zeros((0, *output_hw), dtype=torch.bool) for m in track_masks]
    return masks, numerator / (denominator + 1e-6)
