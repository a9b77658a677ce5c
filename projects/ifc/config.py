"""cfg.MODEL.IFC.*: IFC's own keys, with the official defaults (sukjunhwang/IFC, ifc/config.py).

Test-time windowing uses the shared keys: MODEL.VIS.TEST_WINDOW_SIZE (the official clip length at
test time, INPUT.SAMPLING_FRAME_NUM) and MODEL.VIS.TEST_WINDOW_STRIDE (official CLIP_STRIDE);
MODEL.VIS.MAX_NUM_TRACKS is the association's track cap (official: 50, hard-coded).
"""

from detectron2.config import CfgNode as CN

from vis_zoo.config import register_method_config


@register_method_config("IFC", num_classes_key="MODEL.IFC.NUM_CLASSES")
def add_ifc_config(cfg: CN) -> None:
    cfg.MODEL.IFC = CN()
    # Number of foreground classes; <= 0 takes len(thing_classes) of the datasets
    # (vis_zoo.config.num_classes_from_config).
    cfg.MODEL.IFC.NUM_CLASSES = 40

    # transformer
    cfg.MODEL.IFC.HIDDEN_DIM = 256
    cfg.MODEL.IFC.NHEADS = 8
    cfg.MODEL.IFC.DIM_FEEDFORWARD = 2048
    cfg.MODEL.IFC.DROPOUT = 0.1
    cfg.MODEL.IFC.ENC_LAYERS = 3
    cfg.MODEL.IFC.DEC_LAYERS = 3
    cfg.MODEL.IFC.PRE_NORM = False
    cfg.MODEL.IFC.NUM_MEMORY_BUS = 8  # M memory tokens per frame
    cfg.MODEL.IFC.NUM_OBJECT_QUERIES = 100

    # loss
    cfg.MODEL.IFC.CLASS_WEIGHT = 1.0  # loss_ce weight and class matching cost (official: 1)
    cfg.MODEL.IFC.MASK_WEIGHT = 3.0  # sigmoid focal weight
    cfg.MODEL.IFC.DICE_WEIGHT = 3.0  # dice loss weight and dice matching cost
    cfg.MODEL.IFC.NO_OBJECT_WEIGHT = 0.1
    cfg.MODEL.IFC.DEEP_SUPERVISION = True
    cfg.MODEL.IFC.MASK_STRIDE = 4  # GT masks are bilinearly resized to 1/MASK_STRIDE for the loss
    cfg.MODEL.IFC.MATCH_STRIDE = 4  # ... and to 1/MATCH_STRIDE for matching

    # inference
    cfg.MODEL.IFC.MULTI_CLS_ON = True  # emit every (track, class) with prob > APPLY_CLS_THRES
    cfg.MODEL.IFC.APPLY_CLS_THRES = 0.01
    cfg.MODEL.IFC.MATCH_THRESHOLD = 0.05  # soft-IoU threshold of the clip association
