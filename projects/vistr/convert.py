"""Official VisTR checkpoint (Epiphqny/VisTR, `torch.load(p)["model"]`) -> our state_dict.

Official layout (Epiphqny/VisTR @ 445c9e4, models/segmentation.py): `vistr.backbone.0.body.*`
(torchvision ResNet), `vistr.input_proj.*`,
`vistr.transformer.*`, `vistr.class_embed.*`, `vistr.bbox_embed.layers.*`,
`vistr.query_embed.weight`,
and, outside `vistr.`, `bbox_attention.*`, `mask_head.*`, `insmask_head.*`.
Ours: the same names without `vistr.`, except the backbone, which is detectron2's ResNet
(`backbone.stem.conv1`, `backbone.res{2-5}.{k}.conv{m}[.norm]`, `.shortcut[.norm]`).

Every official tensor must be used, and (given the target model's state_dict) every target tensor
must be produced with the same shape; otherwise a ValueError lists what is wrong.
"""

import re
from typing import Dict, Mapping, Optional

import torch

from vis_zoo.modeling.checkpoint_conversion import convert_with_key_map

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
        mapped = _resnet_key(key[len(_OFFICIAL_BACKBONE) :])
        return None if mapped is None else "backbone." + mapped
    for prefix in _SAME_NAME_PREFIXES:
        if key.startswith(prefix):
            return key[len("vistr.") :] if key.startswith("vistr.") else key
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
    return convert_with_key_map(
        state_dict,
        official_to_ours_key,
        target_state_dict,
        "VisTR",
        ignore=lambda key: key.endswith("num_batches_tracked"),
    )
