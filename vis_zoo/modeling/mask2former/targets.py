"""Mask2Former-format training targets of video clips (VITA's and MinVIS's frame and clip
targets)."""

from typing import List, Sequence, Tuple

import torch
from detectron2.structures import BitMasks

__all__ = ["video_targets"]


def video_targets(
    batched_inputs: Sequence[dict],
    padded_hw: Tuple[int, int],
    num_frames: int,
    device: torch.device,
) -> Tuple[List[dict], List[dict]]:
    """Mapper instances -> (frame targets: B*T dicts, clip targets: B dicts), as the official VITA
    code.

    Clip GT = tracks present (non-empty mask) in >= 1 sampled frame; ids become -1 where the mask
    is empty, then are shifted so the smallest valid id is 0. Masks are placed in the padded
    canvas (zeros where absent).

    Returns:
        frame targets (video-major, frame-minor), each {"labels" long [g], "ids" long [g],
        "masks" float [g, H_pad, W_pad]} with only the tracks present in that frame;
        clip targets, each {"labels" long [G], "ids" long [G, T] (-1 = absent),
        "masks" float [G, T, H_pad, W_pad]}.
    Raises:
        ValueError naming the video when instances are missing or their rows differ between frames.
    """
    h_pad, w_pad = padded_hw
    frame_targets, clip_targets = [], []
    for video in batched_inputs:
        if "instances" not in video:
            raise ValueError(
                f"video {video.get('video_id', '?')}: training input has no 'instances'"
            )
        per_frame = video["instances"]
        if len(per_frame) != num_frames:
            raise ValueError(
                f"video {video.get('video_id', '?')}: {len(per_frame)} instance sets for "
                f"{num_frames} frames"
            )
        num_inst = len(per_frame[0])
        masks = torch.zeros((num_inst, num_frames, h_pad, w_pad), dtype=torch.bool, device=device)
        classes = torch.full((num_inst,), -1, dtype=torch.long, device=device)
        ids = []
        for f, inst in enumerate(per_frame):
            if len(inst) != num_inst:
                raise ValueError(
                    f"video {video.get('video_id', '?')}: frame {f} has {len(inst)} rows, "
                    f"frame 0 has {num_inst} (rows must be the same tracks in every frame)"
                )
            inst = inst.to(device)
            h, w = inst.image_size
            fill = classes == -1
            classes[fill] = inst.gt_classes[fill].long()
            ids.append(inst.gt_ids.long())
            gt = inst.gt_masks.tensor if isinstance(inst.gt_masks, BitMasks) else inst.gt_masks
            masks[:, f, :h, :w] = gt.bool()
        ids = (
            torch.stack(ids, dim=1)
            if num_inst
            else torch.zeros((0, num_frames), dtype=torch.long, device=device)
        )
        ids[masks.flatten(2).sum(-1) == 0] = -1
        valid_frame = ids != -1
        valid_clip = valid_frame.any(dim=-1)
        classes, ids, masks = classes[valid_clip], ids[valid_clip], masks[valid_clip].float()
        valid_frame = valid_frame[valid_clip]
        if len(ids) > 0:
            min_id = max(int(ids[valid_frame].min()), 0)
            ids[valid_frame] -= min_id
        clip_targets.append({"labels": classes, "ids": ids, "masks": masks})
        for f in range(num_frames):
            keep = ids[:, f] != -1
            frame_targets.append(
                {"labels": classes[keep], "ids": ids[keep, f], "masks": masks[keep, f]}
            )
    return frame_targets, clip_targets
