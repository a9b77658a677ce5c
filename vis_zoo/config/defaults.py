"""Config keys shared by every method, and the one entry point that builds a full VIS Zoo config.

Method-specific keys (`cfg.MODEL.<METHOD>.*`) are added by each method's own `add_<method>_config`,
which registers itself here with `register_method_config` when the method package is imported.
"""
from typing import Callable, List

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

_METHOD_CONFIG_FNS: List[Callable] = []


def register_method_config(fn: Callable) -> Callable:
    """Decorator: `fn(cfg)` adds one method's keys; `get_vis_cfg` calls every registered one."""
    if fn not in _METHOD_CONFIG_FNS:
        _METHOD_CONFIG_FNS.append(fn)
    return fn


def add_vis_config(cfg: CN) -> None:
    """Add the keys every method shares: clip sampling, dataset mixing, optimizer, test windows."""
    # CUDA when there is one, else CPU; a config that asks for CUDA on a CPU-only machine is rejected
    # by vis_zoo.engine.setup with a clear message.
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

    # --- clip sampling (training) ---
    cfg.INPUT.SAMPLING_FRAME_NUM = 5  # T, frames per training clip
    cfg.INPUT.SAMPLING_FRAME_RANGE = 20  # frames are drawn from [ref - RANGE, ref + RANGE]
    cfg.INPUT.SAMPLING_FRAME_SHUFFLE = False  # shuffle the sampled frames' order
    cfg.INPUT.SAMPLING_FRAME_REPLACE = True  # draw the T-1 other frames with replacement (IFC/VITA)
    # "flip_by_clip": one flip decision per clip; "none": never flip
    cfg.INPUT.RANDOM_FLIP = "flip_by_clip"
    # Test resize: short side INPUT.MIN_SIZE_TEST, long side at most INPUT.MAX_SIZE_TEST, and the long
    # side rounded as the method's official inference does: "round" (detectron2's ResizeShortestEdge,
    # int(x + 0.5)) or "floor" (torchvision's Resize(int): int(size * long / short)); 480x854 at 300
    # is 300x534 with "round" and 300x533 with "floor". See vis_zoo/data/augmentation.py.
    cfg.INPUT.TEST_RESIZE_ROUNDING = "round"
    # COCO images as pseudo-videos: each image yields T random crops+resizes of itself
    cfg.INPUT.PSEUDO = CN()
    cfg.INPUT.PSEUDO.CROP_SIZE = (0.6, 1.0)  # relative crop side range
    cfg.INPUT.PSEUDO.MIN_SIZE_TRAIN = (288, 320, 352, 392, 416, 448, 480, 512)
    cfg.INPUT.PSEUDO.MAX_SIZE_TRAIN = 768

    # --- datasets ---
    # Sampling ratio of each entry of DATASETS.TRAIN (same length); empty = uniform over videos.
    cfg.DATASETS.DATASET_RATIO = []

    # --- optimizer ---
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    # Extra learning-rate factors by parameter-name substring: ((substring, factor), ...).
    cfg.SOLVER.LR_MULTIPLIERS = ()
    # Weight decay of nn.Embedding parameters (Mask2Former/VITA use 0; IFC decays everything).
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0001
    # DDP's find_unused_parameters (needed when some heads are skipped in a step).
    cfg.MODEL.FIND_UNUSED_PARAMETERS = False

    # A config trained first (into OUTPUT_DIR/init_stage) whose final weights initialise this run when
    # MODEL.WEIGHTS is empty; relative to the folder of the --config-file. See vis_zoo/engine/init_stage.py.
    cfg.MODEL.INIT_STAGE_CONFIG = ""

    # --- inference on long videos (shared by every method) ---
    cfg.MODEL.VIS = CN()
    # Backbone/frame-level work is run in chunks of this many frames (bounded memory).
    cfg.MODEL.VIS.TEST_CHUNK_SIZE = 36
    # Clip-based methods: window length and stride for videos longer than one window.
    cfg.MODEL.VIS.TEST_WINDOW_SIZE = 36
    cfg.MODEL.VIS.TEST_WINDOW_STRIDE = 18
    # Return per-frame masks RLE-encoded (saves memory on long videos).
    cfg.MODEL.VIS.OUTPUT_RLE = False
    cfg.MODEL.VIS.MAX_NUM_TRACKS = 100  # cap on tracks kept per video

    # --- evaluation ---
    cfg.TEST.EVAL_ONLY_RESULTS = False  # write results.json without scoring even if GT is present

    # --- synthetic data ---
    cfg.DATASETS.SYNTHETIC_ROOT = ""  # empty: $VIS_ZOO_CACHE or ~/.cache/vis_zoo/synthetic


def get_vis_cfg() -> CN:
    """detectron2 defaults + shared VIS keys + every imported method's keys."""
    # Import the methods so that each registers its config function.
    import vis_zoo_projects  # noqa: F401

    cfg = get_cfg()
    add_vis_config(cfg)
    for fn in _METHOD_CONFIG_FNS:
        fn(cfg)
    return cfg
