"""VITA's config keys: cfg.MODEL.VITA.* (and Mask2Former's frame-detector keys, which it builds on)."""
from detectron2.config import CfgNode as CN

from vis_zoo.config import register_method_config
from vis_zoo.modeling.mask2former.config import add_mask2former_config


@register_method_config
def add_vita_config(cfg: CN) -> None:
    """Official defaults of `vita_R50_bs8.yaml` (spec §6)."""
    add_mask2former_config(cfg)
    cfg.MODEL.VITA = CN()
    v = cfg.MODEL.VITA
    v.NHEADS = 8
    v.DROPOUT = 0.0
    v.DIM_FEEDFORWARD = 2048
    v.ENC_LAYERS = 6
    v.DEC_LAYERS = 3
    v.ENC_WINDOW_SIZE = 6  # temporal window of the object encoder (frames); 0 = full attention
    v.PRE_NORM = False
    v.ENFORCE_INPUT_PROJ = True
    v.HIDDEN_DIM = 256
    v.NUM_OBJECT_QUERIES = 100  # video queries
    v.DEEP_SUPERVISION = True
    v.NO_OBJECT_WEIGHT = 0.1
    v.LAST_LAYER_NUM = 3  # frame-decoder layers whose queries feed VITA in training
    v.SIM_WEIGHT = 0.5
    v.SIM_USE_CLIP = True
    v.MULTI_CLS_ON = True  # kept for config compatibility (unused by the official inference)
    v.APPLY_CLS_THRES = 0.01  # kept for config compatibility (unused by the official inference)
    v.FREEZE_DETECTOR = False  # train only the VITA module on a fixed frame-level detector
    v.TEST_RUN_CHUNK_SIZE = 18  # frames per detector pass at test time on CUDA (official 18)
    # Pixels per detector pass at test time on CPU (frames per pass = this // (H * W), 1 to
    # TEST_RUN_CHUNK_SIZE): 2 frames at 360x640. An 18-frame pass at 360x640 makes temporaries of
    # 100-350 MB (the pixel decoder's FFN hidden, the /4 maps), which glibc maps fresh for every
    # allocation (page faults on first touch), while two frames' temporaries stay under its 32 MB mmap
    # threshold and are reused; small frames run fastest in large passes. The outputs do not depend
    # on it (measured: projects/vita/README.md).
    v.TEST_RUN_PIXELS_CPU = 2 * 360 * 640
    v.TEST_INTERPOLATE_CHUNK_SIZE = 5  # frames per mask-upsampling step at test time
    # Token pruning at test time: keep this fraction of each frame's frame queries, ranked by
    # foreground probability (1 - p(no object)). 1.0 = keep all (official behaviour).
    v.TEST_KEEP_QUERY_RATIO = 1.0
    # Encoder windows processed per attention call at test time (bounds the attention memory on
    # very long videos; windows are independent, so the result does not depend on it).
    v.TEST_ENC_WINDOW_BATCH = 64
    # Where per-frame mask features are kept at test time: "auto" (the model's device up to 36
    # frames, else CPU, as the official code), "device" or "cpu".
    v.TEST_FEATURE_STORE = "auto"
