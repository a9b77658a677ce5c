"""Official Mask2Former-VIS checkpoint (facebookresearch/Mask2Former, ``checkpoint["model"]`` of a
``VideoMaskFormer``) -> VIS Zoo Mask2Former-VIS state_dict.

The official video model has exactly the image detector's tensors (``backbone.``,
``sem_seg_head.pixel_decoder.``, ``sem_seg_head.predictor.``, ``criterion.empty_weight``): its clip
decoder differs from the image decoder only in how it uses them. Our names are the official ones, so
the detector's key map is the whole conversion; a COCO instance Mask2Former (the official
initialisation) loads with ``skip_class_heads=True``. Every official tensor must be used exactly
once and every one of ours filled with the same shape; otherwise a ValueError lists the offending
keys.
"""

from collections import OrderedDict
from typing import Mapping, Optional

import torch

from vis_zoo.modeling.mask2former.checkpoint import convert_detector_checkpoint, map_detector_key

__all__ = ["convert_official_state_dict"]


def convert_official_state_dict(
    official: Mapping[str, torch.Tensor],
    reference: Optional[Mapping[str, torch.Tensor]] = None,
    skip_class_heads: bool = False,
) -> "OrderedDict[str, torch.Tensor]":
    """Rename an official Mask2Former-VIS (or Mask2Former image) state_dict to ours and check it
    against `reference` (our model's state_dict): see
    `vis_zoo.modeling.mask2former.checkpoint.convert_detector_checkpoint`."""
    return convert_detector_checkpoint(
        official, map_detector_key, reference, "Mask2Former-VIS", skip_class_heads
    )
