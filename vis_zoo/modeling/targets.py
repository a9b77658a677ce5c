"""Clip-level ground truth from the training mapper's per-frame ``Instances``."""

import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def clip_targets_from_batch(batched_inputs: Sequence[dict], device: torch.device) -> List[dict]:
    """One clip-level target per video.

    Each frame's ``Instances`` has one row per track (same row = same track in every frame, ``gt_ids
    = -1`` where absent). A track is kept when it is present in at least one frame; its class is
    taken from its first present frame. Masks are zero-padded to the largest frame of the batch.

    Returns, per video, a dict with
        "labels": long [G], "ids": long [G, T] (-1 where absent), "masks": bool [G, T, H_pad,
        W_pad],
        "valid": bool [G, T] (present in frame t).
    """
    heights, widths = [], []
    for video in batched_inputs:
        if "instances" not in video:
            raise ValueError(
                f"video {video.get('video_id', '?')}: training input has no 'instances'"
            )
        for inst in video["instances"]:
            heights.append(inst.image_size[0])
            widths.append(inst.image_size[1])
    max_h, max_w = max(heights), max(widths)

    targets = []
    for video in batched_inputs:
        frames = video["instances"]
        num_frames = len(frames)
        num_tracks = len(frames[0])
        for t, inst in enumerate(frames):
            if len(inst) != num_tracks:
                raise ValueError(
                    f"video {video.get('video_id', '?')}: frame {t} has {len(inst)} instance rows, "
                    "frame 0 has "
                    f"{num_tracks}; rows must be the same tracks in every frame"
                )
        masks = torch.zeros((num_tracks, num_frames, max_h, max_w), dtype=torch.bool, device=device)
        ids = torch.full((num_tracks, num_frames), -1, dtype=torch.int64, device=device)
        classes = torch.full((num_tracks, num_frames), -1, dtype=torch.int64, device=device)
        for t, inst in enumerate(frames):
            if num_tracks == 0:
                continue
            h, w = inst.image_size
            gt_masks = inst.gt_masks
            gt_masks = gt_masks.tensor if hasattr(gt_masks, "tensor") else gt_masks
            masks[:, t, :h, :w] = gt_masks.to(device=device, dtype=torch.bool)
            ids[:, t] = inst.gt_ids.to(device)
            classes[:, t] = inst.gt_classes.to(device)
        valid = ids != -1
        keep = valid.any(dim=1)
        # class from the first frame where the track is present
        first = valid.float().argmax(dim=1)
        labels = classes.gather(1, first[:, None])[:, 0]
        targets.append(
            {
                "labels": labels[keep],
                "ids": ids[keep],
                "masks": masks[keep] & valid[keep][:, :, None, None],
                "valid": valid[keep],
            }
        )
    return targets


def downsample_clip_masks(masks: Tensor, stride: int) -> Tensor:
    """Soft targets: bilinear resize of [G, T, H, W] masks to [G, T, ceil(H/stride), ceil(W/stride)]
    (float)."""
    height, width = masks.shape[-2:]
    size = (math.ceil(height / stride), math.ceil(width / stride))
    masks = masks.float()
    if masks.shape[0] == 0:
        return masks.new_zeros((0, masks.shape[1], *size))
    return F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
