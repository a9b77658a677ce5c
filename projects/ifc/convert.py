"""Official IFC checkpoint (sukjunhwang/IFC, ``checkpoint["model"]``) -> VIS Zoo IFC state_dict.

The official model wraps everything in ``detr.`` (``Ifc.detr``: backbone Joiner, transformer, heads)
plus the criterion's ``empty_weight`` buffer; the backbone is detectron2's ResNet under
``detr.backbone.0.backbone.``. Ours drops ``detr.``, keeps detectron2's backbone names under
``backbone.`` and calls the clip decoder ``transformer.decoder``. Every official tensor must be used
exactly once and, given the reference state_dict of our model, every one of ours filled with the
same shape; otherwise a ValueError lists the offending keys.
"""
from collections import OrderedDict
from typing import Mapping, Optional, Tuple

import torch

# (official prefix, our prefix), first match wins
KEY_RULES: Tuple[Tuple[str, str], ...] = (
    ("detr.backbone.0.backbone.", "backbone."),
    ("detr.transformer.clip_decoder.", "transformer.decoder."),
    ("detr.transformer.encoder.", "transformer.encoder."),
    ("detr.transformer.memory_bus", "transformer.memory_bus"),
    ("detr.transformer.memory_pos", "transformer.memory_pos"),
    ("detr.input_proj.", "input_proj."),
    ("detr.class_embed.", "class_embed."),
    ("detr.query_embed.", "query_embed."),
    ("detr.mask_head.", "mask_head."),
    ("criterion.empty_weight", "criterion.empty_weight"),
)


def map_official_key(key: str) -> Optional[str]:
    """Our name for an official key, or None if no rule covers it."""
    for official, ours in KEY_RULES:
        if key.startswith(official):
            return ours + key[len(official):]
    return None


def convert_official_state_dict(official: Mapping[str, torch.Tensor],
                                reference: Optional[Mapping[str, torch.Tensor]] = None) -> "OrderedDict[str, torch.Tensor]":
    """Rename an official IFC state_dict to ours.

    Args:
        official: the official ``checkpoint["model"]`` (a whole checkpoint with a "model" key is accepted).
        reference: our model's state_dict (names and shapes to check against); None skips the checks
            against our model but still requires every official key to be mapped.
    Raises:
        ValueError listing unmapped official keys, our keys left missing, and shape mismatches.
    """
    if "model" in official and isinstance(official["model"], Mapping):
        official = official["model"]
    converted: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    unused, mismatched, mismatched_ours = [], [], set()
    for key, value in official.items():
        if key.endswith("num_batches_tracked"):
            unused.append(key)  # FrozenBN never has it; its presence means a different backbone
            continue
        ours = map_official_key(key)
        if ours is None:
            unused.append(key)
            continue
        value = torch.as_tensor(value)
        if reference is not None:
            if ours not in reference:
                unused.append(f"{key} (-> {ours}, not in our model)")
                continue
            if tuple(reference[ours].shape) != tuple(value.shape):
                mismatched.append(f"{key} -> {ours}: official {tuple(value.shape)}, ours {tuple(reference[ours].shape)}")
                mismatched_ours.add(ours)
                continue
        converted[ours] = value
    missing = sorted(set(reference) - set(converted) - mismatched_ours) if reference is not None else []
    if unused or missing or mismatched:
        lines = ["IFC checkpoint conversion failed:"]
        if unused:
            lines.append(f"  {len(unused)} official tensors not used: " + ", ".join(unused[:20]) + (" ..." if len(unused) > 20 else ""))
        if missing:
            lines.append(f"  {len(missing)} of our tensors missing: " + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
        if mismatched:
            lines.append(f"  {len(mismatched)} shape mismatches: " + "; ".join(mismatched[:20]) + (" ..." if len(mismatched) > 20 else ""))
        raise ValueError("\n".join(lines))
    return converted
