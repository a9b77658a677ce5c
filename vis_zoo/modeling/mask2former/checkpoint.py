"""Names of the Mask2Former detector in official checkpoints (Mask2Former, VITA, MinVIS).

All three keep the detector as ``backbone.*``, ``sem_seg_head.pixel_decoder.*``,
``sem_seg_head.predictor.*`` and ``criterion.empty_weight``, the same names as our modules, except
Mask2Former's pre-v2 ``static_query`` (renamed ``query_feat``, as Mask2Former does on load).
"""
from typing import Optional

__all__ = ["DETECTOR_PREFIXES", "CLASS_DEPENDENT", "map_detector_key"]

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
