"""MinVIS's config keys: cfg.MODEL.MINVIS.* (and Mask2Former's detector keys, which it builds on)."""
from detectron2.config import CfgNode as CN

from vis_zoo.config import register_method_config
from vis_zoo.modeling.mask2former.config import add_mask2former_config


@register_method_config
def add_minvis_config(cfg: CN) -> None:
    """Test-time keys; the model itself is the Mask2Former detector (MODEL.MASK_FORMER.*)."""
    add_mask2former_config(cfg)
    cfg.MODEL.MINVIS = CN()
    m = cfg.MODEL.MINVIS
    # Frames per detector pass at test time on CUDA (official WINDOW_INFERENCE: 30-frame windows)
    m.TEST_RUN_CHUNK_SIZE = 30
    # Pixels per detector pass on CPU (frames per pass = this // (H * W)): 2 frames at 360x640 keep
    # the temporaries under glibc's mmap threshold (see MODEL.VITA.TEST_RUN_PIXELS_CPU); the outputs
    # do not depend on it.
    m.TEST_RUN_PIXELS_CPU = 2 * 360 * 640
    m.TEST_INTERPOLATE_CHUNK_SIZE = 5  # frames per mask-upsampling step at test time
    # Where per-frame mask features are kept at test time: "auto" (the model's device up to 36
    # frames, else CPU), "device" or "cpu".
    m.TEST_FEATURE_STORE = "auto"
