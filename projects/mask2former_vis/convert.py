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

from vis_zoo.modeling.mask2former.checkpoint import detector_only_converter

__all__ = ["convert_official_state_dict"]

convert_official_state_dict = detector_only_converter("Mask2Former-VIS")
