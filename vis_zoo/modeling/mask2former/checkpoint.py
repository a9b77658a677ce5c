"""Names of the Mask2Former detector in official checkpoints (Mask2Former, VITA, MinVIS).

All three keep the detector as ``backbone.*``, ``sem_seg_head.pixel_decoder.*``,
``sem_seg_head.predictor.*`` and ``criterion.empty_weight``, the same names as our modules, except
Mask2Former's pre-v2 ``static_query`` (renamed ``query_feat``, as Mask2Former does on load).
"""

from collections import OrderedDict
from typing import Callable, Mapping, Optional

import torch

from vis_zoo.modeling.checkpoint_conversion import convert_with_key_map

__all__ = [
    "DETECTOR_PREFIXES",
    "CLASS_DEPENDENT",
    "map_detector_key",
    "convert_detector_checkpoint",
    "detector_only_converter",
]

DETECTOR_PREFIXES = (
    "backbone.",
    "sem_seg_head.pixel_decoder.",
    "sem_seg_head.predictor.",
    "criterion.empty_weight",
)
# tensors whose shape depends on the number of classes (skipped when loading a COCO initialisation)
CLASS_DEPENDENT = ("class_embed.", "empty_weight")


def map_detector_key(key: str) -> Optional[str]:
    """Our name for an official detector key, or None when the key is not part of the detector."""
    if not key.startswith(DETECTOR_PREFIXES):
        return None
    if key.startswith("sem_seg_head.predictor.static_query."):
        return key.replace("static_query", "query_feat", 1)
    return key


def convert_detector_checkpoint(
    official: Mapping[str, torch.Tensor],
    map_key: Callable[[str], Optional[str]],
    reference: Optional[Mapping[str, torch.Tensor]],
    method: str,
    skip_class_heads: bool = False,
) -> "OrderedDict[str, torch.Tensor]":
    """`convert_with_key_map` for a Mask2Former-based checkpoint: with `skip_class_heads`,
    class-dependent tensors (CLASS_DEPENDENT) whose shape differs from ours are dropped (a COCO
    initialisation's 81-way head) instead of failing, as the official detectron2 loading does."""
    return convert_with_key_map(
        official,
        map_key,
        reference,
        method,
        may_skip_on_shape_mismatch=lambda ours: (
            skip_class_heads and any(c in ours for c in CLASS_DEPENDENT)
        ),
    )


def detector_only_converter(method: str) -> Callable[..., "OrderedDict[str, torch.Tensor]"]:
    """The `convert_official_state_dict(official, reference=None, skip_class_heads=False)` of a
    method whose model is the Mask2Former detector alone (Mask2Former-VIS, MinVIS): the detector's
    key map is the whole conversion; errors name `method`."""

    def convert_official_state_dict(
        official: Mapping[str, torch.Tensor],
        reference: Optional[Mapping[str, torch.Tensor]] = None,
        skip_class_heads: bool = False,
    ) -> "OrderedDict[str, torch.Tensor]":
        return convert_detector_checkpoint(
            official, map_detector_key, reference, method, skip_class_heads
        )

    convert_official_state_dict.__doc__ = (
        f"Rename an official {method} (or Mask2Former image) state_dict to ours and check it "
        "against `reference` (our model's state_dict): see `convert_detector_checkpoint`."
    )
    return convert_official_state_dict
