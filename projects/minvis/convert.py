"""Official MinVIS checkpoint (NVlabs/MinVIS, ``checkpoint["model"]``) -> VIS Zoo MinVIS state_dict.

MinVIS's model is the Mask2Former detector alone (``backbone.``, ``sem_seg_head.pixel_decoder.``,
``sem_seg_head.predictor.``, ``criterion.empty_weight``), named as ours; the same converter loads a
Mask2Former image checkpoint (e.g. the COCO initialisation, with ``skip_class_heads=True``). Every
official tensor must be used exactly once and every one of ours filled with the same shape;
otherwise a ValueError lists the offending keys.
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
    """Rename an official MinVIS (or Mask2Former) state_dict to ours and check it: the detector's
    key map and checks (`vis_zoo.modeling.mask2former.checkpoint.convert_detector_checkpoint`, whose
    arguments these are), with nothing beside the detector."""
    return convert_detector_checkpoint(
        official, map_detector_key, reference, "MinVIS", skip_class_heads
    )
