"""From per-track, per-frame mask logits and class probabilities to the model-output contract:

    {"image_size": (H, W), "pred_scores": float [K], "pred_labels": long [K],
     "pred_masks": K entries, each bool [T, H, W] (CPU) or a list of T RLE dicts / None}

Masks are upsampled one frame at a time straight to the original resolution, so peak memory does
not grow with the video length; with RLE output only compressed masks are kept.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_util
from torch import Tensor


def encode_rle(mask: Tensor) -> dict:
    """bool [H, W] -> COCO compressed RLE with ``counts`` as str (JSON-serialisable)."""
    arr = np.asfortranarray(mask.detach().cpu().numpy().astype(np.uint8))
    rle = mask_util.encode(arr)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


class VideoMaskWriter:
    """Collects the final mask of every (track, frame), frame by frame.

    Called as ``writer(frame_idx, logits [n, h, w], valid bool [n])`` for the n tracks known when the
    frame is finalised: logits are bilinearly upsampled (align_corners=False) to ``output_size`` and
    thresholded (``> mask_threshold``); invalid entries (track not predicted on that frame) are
    empty. Tracks created after a frame was written are empty on that frame.

    Args:
        video_length: T.
        output_size: (H, W) original resolution.
        output_rle: keep per-frame RLE dicts instead of bool tensors.
        mask_threshold: on the logits (0.0 = probability 0.5).
        track_chunk: tracks upsampled at once (bounds the float temporary to track_chunk*H*W).
    """

    def __init__(self, video_length: int, output_size: Tuple[int, int], *, output_rle: bool = False,
                 mask_threshold: float = 0.0, track_chunk: int = 16):
        self.video_length = video_length
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.output_rle = output_rle
        self.mask_threshold = mask_threshold
        self.track_chunk = max(1, track_chunk)
        self._frames: List[Dict[int, object]] = []  # per track: frame -> bool [H, W] (cpu) or RLE

    def __call__(self, frame: int, logits: Tensor, valid: Tensor) -> None:
        if not 0 <= frame < self.video_length:
            raise IndexError(f"VideoMaskWriter: frame {frame} outside [0, {self.video_length})")
        num_tracks = logits.shape[0]
        valid = valid.cpu().tolist()  # one device sync per frame, not per track
        while len(self._frames) < num_tracks:
            self._frames.append({})
        for start in range(0, num_tracks, self.track_chunk):
            chunk = logits[start:start + self.track_chunk]
            up = F.interpolate(chunk[None].float(), size=self.output_size, mode="bilinear", align_corners=False)[0]
            binary = (up > self.mask_threshold).cpu()
            for j in range(chunk.shape[0]):
                track = start + j
                if not valid[track]:
                    continue
                self._frames[track][frame] = encode_rle(binary[j]) if self.output_rle else binary[j]

    def track_masks(self, num_tracks: int) -> List[object]:
        """Per track: bool [T, H, W] (cpu), or a list of T RLE dicts (None where not predicted)."""
        out = []
        height, width = self.output_size
        for track in range(num_tracks):
            frames = self._frames[track] if track < len(self._frames) else {}
            if self.output_rle:
                out.append([frames.get(f) for f in range(self.video_length)])
            else:
                masks = torch.zeros((self.video_length, height, width), dtype=torch.bool)
                for f, m in frames.items():
                    masks[f] = m
                out.append(masks)
        return out


def select_track_classes(class_probs: Tensor, *, multi_class: bool, class_threshold: float
                         ) -> Tuple[Tensor, Tensor, Tensor]:
    """Which (track, class) pairs to emit.

    Args:
        class_probs: [N, K+1] softmax probabilities, last column = no-object.
        multi_class: emit every (track, class) with prob > class_threshold (IFC's MULTI_CLS_ON), in
            (track, class) row-major order; else one entry per track with its best foreground class.
    Returns:
        track_idx long [E], scores float [E], labels long [E].
    """
    fg = class_probs[:, :-1]
    if multi_class:
        track_idx, labels = torch.where(fg > class_threshold)
        scores = fg[track_idx, labels]
    else:
        scores, labels = fg.max(-1) if fg.shape[0] else (fg.new_zeros(0), fg.new_zeros(0, dtype=torch.long))
        track_idx = torch.arange(fg.shape[0], device=fg.device)
    return track_idx, scores, labels


def build_video_output(image_size: Tuple[int, int], scores: Tensor, labels: Tensor,
                       masks: Sequence[object]) -> dict:
    """The model-output contract dict (scores/labels moved to CPU)."""
    if len(masks) != len(scores) or len(labels) != len(scores):
        raise ValueError(f"build_video_output: {len(scores)} scores, {len(labels)} labels, {len(masks)} masks")
    return {
        "image_size": (int(image_size[0]), int(image_size[1])),
        "pred_scores": scores.detach().float().cpu(),
        "pred_labels": labels.detach().long().cpu(),
        "pred_masks": list(masks),
    }


def empty_video_output(image_size: Tuple[int, int]) -> dict:
    return build_video_output(image_size, torch.zeros(0), torch.zeros(0, dtype=torch.long), [])


def track_has_pixels(masks) -> bool:
    """A track's masks (bool [T, H, W], or T RLE dicts / None) have at least one foreground pixel."""
    if isinstance(masks, Tensor):
        return bool(masks.any())
    return any(m is not None and mask_util.area(m) > 0 for m in masks)


OUTPUT_KEYS = ("image_size", "pred_scores", "pred_labels", "pred_masks")


def check_video_output(output: dict, *, num_frames: int, image_size: Optional[Tuple[int, int]] = None,
                       num_classes: Optional[int] = None, num_predictions: Optional[int] = None,
                       rle: Optional[bool] = None) -> None:
    """Raise a ValueError saying what is wrong when `output` breaks the model-output contract.

    The contract (one dict per video): exactly the keys "image_size" (H, W) ints, "pred_scores"
    float32 [K] in [0, 1], "pred_labels" int64 [K] in [0, num_classes), "pred_masks" K entries,
    each bool [num_frames, H, W] or a list of num_frames COCO RLE dicts (size [H, W], str counts) or
    None (no mask on that frame). Only shapes, types and the [K] vectors are read, never the mask
    pixels, so the check costs microseconds per video.

    Args:
        image_size: the expected (H, W); None takes the output's own.
        num_classes: K classes, bounding the labels; None skips that bound.
        num_predictions: the expected K; None accepts any.
        rle: True requires RLE masks, False bool tensors, None accepts either.
    """
    def fail(message: str):
        raise ValueError(f"model output breaks the output contract: {message}")

    if not isinstance(output, dict) or set(output) != set(OUTPUT_KEYS):
        fail(f"keys {sorted(output) if isinstance(output, dict) else type(output).__name__}, "
             f"expected {sorted(OUTPUT_KEYS)}")
    size = output["image_size"]
    if not (isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        fail(f"image_size {size!r} is not a tuple of two ints")
    if image_size is not None and size != tuple(int(v) for v in image_size):
        fail(f"image_size {size}, expected {tuple(image_size)}")
    scores, labels, masks = output["pred_scores"], output["pred_labels"], output["pred_masks"]
    if not isinstance(scores, Tensor) or scores.dtype != torch.float32 or scores.dim() != 1:
        fail(f"pred_scores must be a float32 [K] tensor, got {_describe(scores)}")
    if not isinstance(labels, Tensor) or labels.dtype != torch.long or labels.shape != scores.shape:
        fail(f"pred_labels must be an int64 [K={len(scores)}] tensor, got {_describe(labels)}")
    if not isinstance(masks, list) or len(masks) != len(scores):
        fail(f"pred_masks must be a list of K={len(scores)} tracks, got {_describe(masks)}")
    if num_predictions is not None and len(scores) != num_predictions:
        fail(f"{len(scores)} predictions, expected {num_predictions}")
    if len(scores) and not bool(((scores >= 0) & (scores <= 1)).all()):
        fail(f"pred_scores outside [0, 1]: min {float(scores.min())}, max {float(scores.max())}")
    if len(labels) and (int(labels.min()) < 0 or (num_classes is not None and int(labels.max()) >= num_classes)):
        fail(f"pred_labels outside [0, {num_classes}): {labels.tolist()}")
    height, width = size
    for track, track_masks in enumerate(masks):
        if isinstance(track_masks, Tensor):
            if rle is True:
                fail(f"track {track}: a bool tensor where RLE masks were expected")
            if track_masks.dtype != torch.bool or tuple(track_masks.shape) != (num_frames, height, width):
                fail(f"track {track}: masks {_describe(track_masks)}, expected bool "
                     f"[{num_frames}, {height}, {width}]")
            continue
        if rle is False:
            fail(f"track {track}: {type(track_masks).__name__} where bool tensors were expected")
        if not isinstance(track_masks, (list, tuple)) or len(track_masks) != num_frames:
            fail(f"track {track}: {_describe(track_masks)}, expected {num_frames} RLE dicts or None")
        for frame, mask in enumerate(track_masks):
            if mask is None:
                continue
            if not (isinstance(mask, dict) and tuple(mask.get("size", ())) == (height, width)
                    and isinstance(mask.get("counts"), str)):
                fail(f"track {track}, frame {frame}: not a COCO RLE of size [{height}, {width}] with "
                     f"str counts: {str(mask)[:80]}")


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"{value.dtype} {list(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__
