"""VITA's config keys: cfg.MODEL.VITA.* (and Mask2Former's frame-detector keys, which it builds
on)."""

from detectron2.config import CfgNode as CN

from vis_zoo.config import register_method_config
from vis_zoo.modeling.mask2former.config import add_mask2former_config


@register_method_config("Vita", num_classes_key="MODEL.SEM_SEG_HEAD.NUM_CLASSES")
def add_vita_config(cfg: CN) -> None:
    """Official defaults (sukjunhwang/VITA, vita/config.py and
    configs/youtubevis_2019/vita_R50_bs8.yaml).

    Test-time detector passes use the shared MODEL.VIS.TEST_CHUNK_SIZE (official
    MODEL.VITA.TEST_RUN_CHUNK_SIZE, 18: set in configs/vita/Base-VITA.yaml), TEST_CHUNK_PIXELS_CPU,
    TEST_INTERPOLATE_CHUNK_SIZE and TEST_FEATURE_STORE."""
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
    # Token pruning at test time: keep this fraction of each frame's frame queries, ranked by
    # foreground probability (1 - p(no object)). 1.0 = keep all (official behaviour).
    v.TEST_KEEP_QUERY_RATIO = 1.0
    # Encoder windows processed per attention call at test time; windows are independent, so the
    # result does not depend on it. Each window of 6 frames x 100 queries holds 8 heads of
    # 600 x 600 attention scores (11.5 MB): on CPU, groups of 1-4 windows run as fast as 20 at
    # once and hold 0.4 GB less at 120 frames (docs/long_videos.md).
    v.TEST_ENC_WINDOW_BATCH = 4
    # Videos longer than this run the VITA module block by block (at most this many frames per
    # encoder call, context included: blocks of 84 frames with 18 frames of context on either side
    # in the R-50 configs), with the object tokens in temporary files: memory independent of the
    # length, the same result up to float rounding. Up to it, one pass over all tokens (official).
    v.TEST_STREAM_FRAMES = 120
