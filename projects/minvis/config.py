"""MinVIS's config: the Mask2Former detector's keys (MODEL.MASK_FORMER.*, MODEL.SEM_SEG_HEAD.*).

MinVIS adds no model keys of its own. Its test-time detector passes use the shared keys
MODEL.VIS.TEST_CHUNK_SIZE (30 in configs/minvis/Base-MinVIS.yaml, the official 30-frame
WINDOW_INFERENCE window), TEST_CHUNK_PIXELS_CPU, TEST_INTERPOLATE_CHUNK_SIZE and TEST_FEATURE_STORE.
"""

from detectron2.config import CfgNode as CN

from vis_zoo.config import register_method_config
from vis_zoo.modeling.mask2former.config import add_mask2former_config


@register_method_config("MinVIS", num_classes_key="MODEL.SEM_SEG_HEAD.NUM_CLASSES")
def add_minvis_config(cfg: CN) -> None:
    """MinVIS is the Mask2Former detector run per frame: its keys only."""
    add_mask2former_config(cfg)
