"""SeqFormer config keys (cfg.MODEL.SEQFORMER.*), defaults = the official R-50 YouTube-VIS
recipe."""

from detectron2.config import CfgNode as CN

from vis_zoo.config import register_method_config


@register_method_config("SeqFormer", num_classes_key="MODEL.SEQFORMER.NUM_CLASSES")
def add_seqformer_config(cfg):
    """Add cfg.MODEL.SEQFORMER with the official defaults (wjf5203/SeqFormer main.py + r50
    script)."""
    cfg.MODEL.SEQFORMER = CN()
    c = cfg.MODEL.SEQFORMER
    # Contiguous classes (YTVIS-19: 40). The official head has 42 logits indexed by YTVIS id; the
    # converter keeps rows 1..NUM_CLASSES. Set 42 to reproduce the official head exactly.
    c.NUM_CLASSES = 40
    c.IN_FEATURES = ["res3", "res4", "res5"]  # C3..C5; one extra strided level is added on C5
    c.HIDDEN_DIM = 256
    c.NHEADS = 8
    c.ENC_LAYERS = 6
    c.DEC_LAYERS = 6
    c.DIM_FEEDFORWARD = 1024
    c.DROPOUT = 0.1
    c.NUM_FEATURE_LEVELS = 4
    c.ENC_N_POINTS = 4
    c.DEC_N_POINTS = 4
    c.NUM_QUERIES = 300
    c.REL_COORD = True
    c.MASK_OUT_STRIDE = 4
    # matching costs
    c.COST_CLASS = 2.0
    c.COST_BBOX = 5.0
    c.COST_GIOU = 2.0
    # p of the box-distance cost: the official matcher uses torch.cdist with its default p = 2
    c.BBOX_COST_P = 2.0
    # loss weights
    c.CLASS_WEIGHT = 2.0
    c.BBOX_WEIGHT = 5.0
    c.GIOU_WEIGHT = 2.0
    c.MASK_WEIGHT = 2.0
    c.DICE_WEIGHT = 5.0
    c.FOCAL_ALPHA = 0.25
    c.FOCAL_GAMMA = 2.0
    c.DEEP_SUPERVISION = True
    # training batches are padded to a multiple of this (the GT mask subsampling needs it)
    c.SIZE_DIVISIBILITY = 32
    # inference
    c.TEST_TOPK = 10  # top-k (query, class) pairs over the flattened Q x K scores
    c.MASK_THRESHOLD = 0.5
