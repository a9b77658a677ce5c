"""Config keys of the Mask2Former frame-level detector (MODEL.MASK_FORMER.*, MODEL.SEM_SEG_HEAD.*).

Defaults are Mask2Former's instance-segmentation R-50 values (as VITA uses them). Not a method of
its own: the config functions of the methods built on the detector (VITA, MinVIS) call it.
"""

from detectron2.config import CfgNode as CN


def add_mask2former_config(cfg: CN) -> None:
    """Add Mask2Former's keys (idempotent: a second call leaves existing values alone)."""
    if "MASK_FORMER" in cfg.MODEL:
        return
    # New SEM_SEG_HEAD keys only: detectron2's own SEM_SEG_HEAD defaults (NAME, NUM_CLASSES,
    # IN_FEATURES, CONVS_DIM, NORM, COMMON_STRIDE) are left alone; Mask2Former configs set them.
    head = cfg.MODEL.SEM_SEG_HEAD
    head.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"
    head.MASK_DIM = 256
    head.TRANSFORMER_ENC_LAYERS = 6
    head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]

    cfg.MODEL.MASK_FORMER = CN()
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
    mf.DEEP_SUPERVISION = True
    mf.NO_OBJECT_WEIGHT = 0.1
    mf.CLASS_WEIGHT = 2.0
    mf.MASK_WEIGHT = 5.0
    mf.DICE_WEIGHT = 5.0
    mf.HIDDEN_DIM = 256
    mf.NUM_OBJECT_QUERIES = 100
    mf.NHEADS = 8
    mf.DROPOUT = 0.0
    mf.DIM_FEEDFORWARD = 2048
    mf.DEC_LAYERS = 10  # 9 masked-attention layers + the prediction on the initial queries
    mf.PRE_NORM = False
    mf.ENFORCE_INPUT_PROJ = False
    mf.SIZE_DIVISIBILITY = 32
    # point-sampled mask losses / matching costs
    mf.TRAIN_NUM_POINTS = 112 * 112
    mf.OVERSAMPLE_RATIO = 3.0
    mf.IMPORTANCE_SAMPLE_RATIO = 0.75
