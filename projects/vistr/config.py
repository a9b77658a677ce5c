"""cfg.MODEL.VISTR.*: VisTR's own keys, defaults = the official R-50 YouTube-VIS 2019 recipe."""

from detectron2.config import CfgNode as CN

from vis_zoo.config import register_method_config


@register_method_config("VisTR", num_classes_key="MODEL.VISTR.NUM_CLASSES")
def add_vistr_config(cfg: CN) -> None:
    cfg.MODEL.VISTR = CN()
    # Dataset classes K. The class head has K + 2 logits: index 0 is the official code's unused
    # index (YouTube-VIS ids start at 1; the matcher scores absent frames against it), 1..K the
    # classes, K + 1 no-object. K = 40 gives the official 42-way head.
    cfg.MODEL.VISTR.NUM_CLASSES = 40
    cfg.MODEL.VISTR.HIDDEN_DIM = 384
    cfg.MODEL.VISTR.NHEADS = 8
    cfg.MODEL.VISTR.DIM_FEEDFORWARD = 2048
    cfg.MODEL.VISTR.ENC_LAYERS = 6
    cfg.MODEL.VISTR.DEC_LAYERS = 6
    cfg.MODEL.VISTR.DROPOUT = 0.1
    cfg.MODEL.VISTR.PRE_NORM = False
    # Clip length T (must equal INPUT.SAMPLING_FRAME_NUM in training and MODEL.VIS.TEST_WINDOW_SIZE
    # at test time) and instance slots per frame: T·NUM_SLOTS queries (official: 36 × 10 = 360).
    cfg.MODEL.VISTR.NUM_FRAMES = 36
    cfg.MODEL.VISTR.NUM_SLOTS = 10
    cfg.MODEL.VISTR.AUX_LOSS = True
    # Matching costs (official --set_cost_class/bbox/giou; the "giou" cost is plain IoU there)
    cfg.MODEL.VISTR.COST_CLASS = 1.0
    cfg.MODEL.VISTR.COST_BBOX = 5.0
    cfg.MODEL.VISTR.COST_IOU = 2.0
    # Loss weights
    cfg.MODEL.VISTR.CLASS_WEIGHT = 1.0
    cfg.MODEL.VISTR.BBOX_WEIGHT = 5.0
    cfg.MODEL.VISTR.GIOU_WEIGHT = 2.0
    cfg.MODEL.VISTR.MASK_WEIGHT = 1.0
    cfg.MODEL.VISTR.DICE_WEIGHT = 1.0
    cfg.MODEL.VISTR.NO_OBJECT_WEIGHT = 0.1  # official eos_coef
    cfg.MODEL.VISTR.FOCAL_ALPHA = 0.25
    cfg.MODEL.VISTR.FOCAL_GAMMA = 2.0
    # Initial foreground probability of the mask logits (bias of the last 3-D conv). 0 = PyTorch's
    # default init, as the official model; from random init a small prior (e.g. 0.05) lets the mask
    # losses work on the objects from the start instead of first lowering every pixel from p = 0.5.
    cfg.MODEL.VISTR.MASK_PRIOR_PROB = 0.0
    # Init scale of the mask head's first conv (lay1) on its `NHEADS` attention-map input channels.
    # 1 = PyTorch's default init, as the official model. The maps come from one softmax over
    # heads × pixels, so at init each value is ~1/(heads·h·w) (0.005 for 8 heads on a 4×6 grid)
    # next to encoder-memory channels of unit scale: from random init the only slot-specific input
    # of the mask head is then ~100× weaker than the rest, every slot predicts the same mask, and
    # the attention maps get almost no gradient. A gain of ~100 (synthetic recipe) fixes both.
    cfg.MODEL.VISTR.ATTENTION_MAP_INIT_GAIN = 1.0
    # Inference
    cfg.MODEL.VISTR.MASK_THRESHOLD = 0.5
    cfg.MODEL.VISTR.FRAME_SCORE_THRESHOLD = 0.001  # a track's frame with a lower score has no mask
    # Frames sent through the mask head at once at test time (bounds the stride-4 activations)
    cfg.MODEL.VISTR.TEST_MASK_HEAD_CHUNK = 6
