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

from vis_zoo.modeling.checkpoint_conversion import convert_with_key_map

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
            return ours + key[len(official) :]
    return None


def convert_official_state_dict(
    official: Mapping[str, torch.Tensor], reference: Optional[Mapping[str, torch.Tensor]] = None
) -> "OrderedDict[str, torch.Tensor]":
    """Rename an official IFC state_dict to ours.

    Args:
        official: the official ``checkpoint["model"]`` (a whole checkpoint with a "model" key is
        accepted).
        reference: our model's state_dict (names and shapes to check against); None skips the checks
            against our model but still requires every official key to be mapped.
    Raises:
        ValueError listing unmapped official keys, our keys left missing, and shape mismatches.
    """
    # FrozenBN never has num_batches_tracked: its presence means a different backbone, so it is
    # left unmapped (and reported).
    return convert_with_key_map(
        official,
        lambda key: None if key.endswith("num_batches_tracked") else map_official_key(key),
        reference,
        "IFC",
    )
