"""Official VITA checkpoint (sukjunhwang/VITA, ``checkpoint["model"]``) -> VIS Zoo VITA state_dict.

Our module tree mirrors the official one (``backbone.``, ``sem_seg_head.pixel_decoder.``,
``sem_seg_head.predictor.``, ``vita_module.``, ``criterion.empty_weight``,
``vita_criterion.empty_weight``), so names map one to one, except Mask2Former's pre-v2
``static_query`` (renamed ``query_feat``, as Mask2Former does on load). Every official tensor must
be used exactly once and, given our model's state_dict, every one of ours filled with the same
shape; otherwise a ValueError lists the offending keys.

COCO-pretrained stage-1 checkpoints have an 81-way class head: pass ``skip_class_heads=True`` to
drop the class-dependent tensors (class_embed, empty_weight) instead of failing, as the official
detectron2 loading does.
"""

from collections import OrderedDict
from typing import Mapping, Optional

import torch

from vis_zoo.modeling.mask2former.checkpoint import (
    DETECTOR_PREFIXES,
    convert_detector_checkpoint,
    map_detector_key,
)

__all__ = ["OFFICIAL_PREFIXES", "map_official_key", "convert_official_state_dict"]

VITA_PREFIXES = (
    "vita_module.",
    "vita_criterion.empty_weight",
)  # named as ours, beside the detector
OFFICIAL_PREFIXES = DETECTOR_PREFIXES + VITA_PREFIXES


def map_official_key(key: str) -> Optional[str]:
    """Our name for an official key, or None when it is not part of the VITA model."""
    if key.startswith(VITA_PREFIXES):
        return key
    return map_detector_key(key)


def convert_official_state_dict(
    official: Mapping[str, torch.Tensor],
    reference: Optional[Mapping[str, torch.Tensor]] = None,
    skip_class_heads: bool = False,
) -> "OrderedDict[str, torch.Tensor]":
    """Rename an official VITA state_dict to ours and check it.

    Args:
        official: the official ``checkpoint["model"]`` (a whole checkpoint with "model" is
        accepted).
        reference: our model's state_dict (names and shapes to check against); None checks only
            that every official key is mapped.
        skip_class_heads: drop class-dependent tensors whose shape differs from ours (COCO init).
    Raises:
        ValueError listing unused official tensors, our tensors left missing, and shape mismatches.
    """
    return convert_detector_checkpoint(
        official, map_official_key, reference, "VITA", skip_class_heads
    )
