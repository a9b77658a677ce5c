"""Official VisTR checkpoint (Epiphqny/VisTR, `torch.load(p)["model"]`) -> our state_dict.

Official layout (spec §7): `vistr.backbone.0.body.*` (torchvision ResNet), `vistr.input_proj.*`,
`vistr.transformer.*`, `vistr.class_embed.*`, `vistr.bbox_embed.layers.*`, `vistr.query_embed.weight`,
and, outside `vistr.`, `bbox_attention.*`, `mask_head.*`, `insmask_head.*`.
Ours: the same names without `vistr.`, except the backbone, which is detectron2's ResNet
(`backbone.stem.conv1`, `backbone.res{2-5}.{k}.conv{m}[.norm]`, `.shortcut[.norm]`).

Every official tensor must be used, and (given the target model's state_dict) every target tensor
must be produced with the same shape; otherwise a ValueError lists what is wrong.
"""
import re
from typing import Dict, List, Mapping, Optional

import torch

__all__ = ["convert_official_state_dict", "official_to_ours_key"]

_OFFICIAL_BACKBONE = "vistr.backbone.0.body."
_SAME_NAME_PREFIXES = (
    "vistr.input_proj.",
    "vistr.transformer.",
    "vistr.class_embed.",
    "vistr.bbox_embed.",
    "vistr.query_embed.",
    "bbox_attention.",
    "mask_head.",
    "insmask_head.",
)
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


def _resnet_key(name: str) -> Optional[str]:
    """torchvision ResNet parameter name -> detectron2 ResNet name (None if not recognised)."""
    m = re.fullmatch(r"conv1\.weight", name)
    if m:
        return "stem.conv1.weight"
    m = re.fullmatch(r"bn1\.(\w+)", name)
    if m and m.group(1) in _BN_FIELDS:
        return f"stem.conv1.norm.{m.group(1)}"
    m = re.fullmatch(r"layer(\d)\.(\d+)\.conv(\d)\.weight", name)
    if m:
        return f"res{int(m.group(1)) + 1}.{m.group(2)}.conv{m.group(3)}.weight"
    m = re.fullmatch(r"layer(\d)\.(\d+)\.bn(\d)\.(\w+)", name)
    if m and m.group(4) in _BN_FIELDS:
        return f"res{int(m.group(1)) + 1}.{m.group(2)}.conv{m.group(3)}.norm.{m.group(4)}"
    m = re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.0\.weight", name)
    if m:
        return f"res{int(m.group(1)) + 1}.{m.group(2)}.shortcut.weight"
    m = re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.1\.(\w+)", name)
    if m and m.group(3) in _BN_FIELDS:
        return f"res{int(m.group(1)) + 1}.{m.group(2)}.shortcut.norm.{m.group(3)}"
    return None


def official_to_ours_key(key: str) -> Optional[str]:
    """Our name for an official key; None if the key is not part of the model (unknown)."""
    if key.startswith(_OFFICIAL_BACKBONE):
        mapped = _resnet_key(key[len(_OFFICIAL_BACKBONE):])
        return None if mapped is None else "backbone." + mapped
    for prefix in _SAME_NAME_PREFIXES:
        if key.startswith(prefix):
            return key[len("vistr."):] if key.startswith("vistr.") else key
    return None


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    target_state_dict: Optional[Mapping[str, torch.Tensor]] = None,
) -> Dict[str, torch.Tensor]:
    """Map an official VisTR state_dict onto our parameter names.

    Args:
        state_dict: the official `checkpoint["model"]` (a whole checkpoint with a "model" entry is
            accepted too). BatchNorm `num_batches_tracked` counters are ignored (FrozenBN has none).
        target_state_dict: our model's `state_dict()`; when given, the result must cover exactly its
            keys with equal shapes.
    Returns:
        our state_dict (the official tensors, renamed).
    Raises:
        ValueError listing unknown official keys, duplicate targets, missing target keys or shape
        mismatches.
    """
    if "model" in state_dict and isinstance(state_dict["model"], Mapping):
        state_dict = state_dict["model"]
    converted: Dict[str, torch.Tensor] = {}
    unknown: List[str] = []
    duplicates: List[str] = []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        ours = official_to_ours_key(key)
        if ours is None:
            unknown.append(key)
        elif ours in converted:
            duplicates.append(f"{key} -> {ours}")
        else:
            converted[ours] = value
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} official tensors have no counterpart: {unknown[:10]}")
    if duplicates:
        problems.append(f"several official tensors map to one name: {duplicates[:10]}")
    if target_state_dict is not None:
        missing = [k for k in target_state_dict if k not in converted]
        extra = [k for k in converted if k not in target_state_dict]
        shapes = [
            f"{k}: official {tuple(converted[k].shape)} vs ours {tuple(v.shape)}"
            for k, v in target_state_dict.items()
            if k in converted and tuple(converted[k].shape) != tuple(v.shape)
        ]
        if missing:
            problems.append(f"{len(missing)} of our tensors are not in the checkpoint: {missing[:10]}")
        if extra:
            problems.append(f"{len(extra)} converted tensors are not in our model: {extra[:10]}")
        if shapes:
            problems.append(f"{len(shapes)} shape mismatches (check MODEL.VISTR.* / MODEL.RESNETS.*): {shapes[:10]}")
    if problems:
        raise ValueError("VisTR checkpoint conversion failed:\n  " + "\n  ".join(problems))
    return converted
