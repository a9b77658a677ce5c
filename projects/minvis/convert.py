"""Official MinVIS checkpoint (NVlabs/MinVIS, ``checkpoint["model"]``) -> VIS Zoo MinVIS state_dict.

MinVIS's model is the Mask2Former detector alone (``backbone.``, ``sem_seg_head.pixel_decoder.``,
``sem_seg_head.predictor.``, ``criterion.empty_weight``), named as ours; the same converter loads a
Mask2Former image checkpoint (e.g. the COCO initialisation, with ``skip_class_heads=True``). Every
official tensor must be used exactly once and every one of ours filled with the same shape;
otherwise a ValueError lists the offending keys.
"""

from vis_zoo.modeling.mask2former.checkpoint import detector_only_converter

__all__ = ["convert_official_state_dict"]

convert_official_state_dict = detector_only_converter("MinVIS")
