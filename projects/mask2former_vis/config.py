"""Mask2Former-VIS's config: the Mask2Former detector's keys (MODEL.MASK_FORMER.*,
MODEL.SEM_SEG_HEAD.*), with MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
"VideoMultiScaleMaskedTransformerDecoder" (the official name) selecting the clip decoder.

It adds no model keys of its own. The clip length in training is INPUT.SAMPLING_FRAME_NUM (2, as the
official); at test time a video of at most MODEL.VIS.TEST_WINDOW_SIZE frames (0 = any length) is one
clip, a longer one windows every MODEL.VIS.TEST_WINDOW_STRIDE frames joined by the shared
association; MODEL.VIS.TEST_CHUNK_SIZE / TEST_CHUNK_PIXELS_CPU set the frames per backbone pass.
"""

from detectron2.config import CfgNode as CN

from vis_zoo.config import register_method_config
from vis_zoo.modeling.mask2former.config import add_mask2former_config


@register_method_config("VideoMaskFormer", num_classes_key="MODEL.SEM_SEG_HEAD.NUM_CLASSES")
def add_mask2former_vis_config(cfg: CN) -> None:
    """Mask2Former-VIS is the Mask2Former detector with clip queries: the detector's keys only."""
    add_mask2former_config(cfg)
