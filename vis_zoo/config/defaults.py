"""Config keys shared by every method, and the one entry point that builds a VIS Zoo config.

A config holds the shared keys (`add_vis_config`) plus the keys of the one method that
MODEL.META_ARCHITECTURE selects, as each official code base adds only its own keys in its own
train_net. A method's keys (`cfg.MODEL.<METHOD>.*`, and keys of shared pieces it uses, e.g. the
Mask2Former detector's `MODEL.MASK_FORMER.*`) come from its `add_<method>_config`, registered with
`@register_method_config("<META_ARCHITECTURE>", num_classes_key=...)` in its `config.py`. The method
package is imported only when a config selects it (`vis_zoo_projects.import_method`), so a method
whose code is broken does not stop the others from building, training or being evaluated.
"""

from typing import Callable, Dict, NamedTuple, Optional

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg


class MethodConfig(NamedTuple):
    """A method's config hooks: `add_config(cfg)` adds its keys; `num_classes_key` is the dotted key
    holding its number of foreground classes (its official name, e.g.
    MODEL.SEM_SEG_HEAD.NUM_CLASSES).
    """

    add_config: Callable[[CN], None]
    num_classes_key: str


_METHOD_CONFIGS: Dict[str, MethodConfig] = {}


def register_method_config(meta_architecture: str, *, num_classes_key: str) -> Callable:
    """Decorator on a method's `add_<method>_config(cfg)`: the keys of MODEL.META_ARCHITECTURE
    `meta_architecture`, and where its class count lives (read by `num_classes_from_config`)."""

    def register(fn: Callable[[CN], None]) -> Callable[[CN], None]:
        known = _METHOD_CONFIGS.get(meta_architecture)
        if known is not None and known.add_config is not fn:
            raise ValueError(
                f"two config functions for META_ARCHITECTURE {meta_architecture!r}: "
                f"{known.add_config.__module__} and {fn.__module__}"
            )
        _METHOD_CONFIGS[meta_architecture] = MethodConfig(fn, num_classes_key)
        return fn

    return register


def method_config(meta_architecture: str) -> Optional[MethodConfig]:
    """The registered hooks of a VIS Zoo method (importing its package), or None for a
    meta-architecture that is not a VIS Zoo method (e.g. a test model or detectron2's own)."""
    import vis_zoo_projects

    vis_zoo_projects.import_method(meta_architecture)
    return _METHOD_CONFIGS.get(meta_architecture)


def add_vis_config(cfg: CN) -> None:
    """Add the keys every method shares: clip sampling, dataset mixing, optimizer, test windows."""
    # CUDA when there is one, else CPU; a config that asks for CUDA on a CPU-only machine is
    # rejected by vis_zoo.engine.setup with a clear message.
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

    # --- clip sampling (training) ---
    cfg.INPUT.SAMPLING_FRAME_NUM = 5  # T, frames per training clip
    cfg.INPUT.SAMPLING_FRAME_RANGE = 20  # frames are drawn from [ref - RANGE, ref + RANGE]
    cfg.INPUT.SAMPLING_FRAME_SHUFFLE = False  # shuffle the sampled frames' order
    cfg.INPUT.SAMPLING_FRAME_REPLACE = True  # draw the T-1 other frames with replacement (IFC/VITA)
    # "flip_by_clip": one flip decision per clip; "none": never flip
    cfg.INPUT.RANDOM_FLIP = "flip_by_clip"
    # Test resize: short side INPUT.MIN_SIZE_TEST, long side at most INPUT.MAX_SIZE_TEST, and the
    # long side rounded as the method's official inference does: "round" (detectron2's
    # ResizeShortestEdge, int(x + 0.5)) or "floor" (torchvision's Resize(int): int(size * long /
    # short)); 480x854 at 300 is 300x534 with "round" and 300x533 with "floor". See
    # vis_zoo/data/augmentation.py.
    cfg.INPUT.TEST_RESIZE_ROUNDING = "round"
    # COCO images as pseudo-videos: each image yields T random crops+resizes of itself
    cfg.INPUT.PSEUDO = CN()
    cfg.INPUT.PSEUDO.CROP_SIZE = (0.6, 1.0)  # relative crop side range
    cfg.INPUT.PSEUDO.MIN_SIZE_TRAIN = (288, 320, 352, 392, 416, 448, 480, 512)
    cfg.INPUT.PSEUDO.MAX_SIZE_TRAIN = 768

    # --- datasets ---
    # Sampling ratio of each entry of DATASETS.TRAIN (same length); empty = uniform over videos.
    cfg.DATASETS.DATASET_RATIO = []
    # YouTube-VIS-format datasets every tool registers from the config, no code needed:
    # ((name, json_file, image_root[, "ytvis" | "ovis"]), ...); class names come from the JSON.
    # Name them in DATASETS.TRAIN / DATASETS.TEST. See vis_zoo/data/datasets/from_config.py.
    cfg.DATASETS.YTVIS_FORMAT = ()

    # --- optimizer ---
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    # Extra learning-rate factors by parameter-name substring: ((substring, factor), ...).
    cfg.SOLVER.LR_MULTIPLIERS = ()
    # Weight decay of nn.Embedding parameters (Mask2Former/VITA use 0; IFC decays everything).
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0001
    # DDP's find_unused_parameters (needed when some heads are skipped in a step).
    cfg.MODEL.FIND_UNUSED_PARAMETERS = False

    # A config trained first (into OUTPUT_DIR/init_stage) whose final weights initialise this run
    # when MODEL.WEIGHTS is empty; relative to the folder of the --config-file. See
    # vis_zoo/engine/init_stage.py.
    cfg.MODEL.INIT_STAGE_CONFIG = ""

    # --- inference on long videos (shared by every method) ---
    cfg.MODEL.VIS = CN()
    # Per-frame work (backbone, and the frame detector of VITA/MinVIS) runs on this many frames at a
    # time (bounded memory).
    cfg.MODEL.VIS.TEST_CHUNK_SIZE = 36
    # Methods that run a whole detector per frame (VITA, MinVIS), on CPU: as many frames per pass as
    # fit in this many pixels (1 to TEST_CHUNK_SIZE frames; 2 frames at 360x640). Large passes make
    # temporaries of 100-350 MB that glibc maps fresh on every allocation (page faults on first
    # touch); under its 32 MB mmap threshold they are reused. Outputs do not depend on it.
    cfg.MODEL.VIS.TEST_CHUNK_PIXELS_CPU = 2 * 360 * 640
    # Where VITA keeps per-frame mask features at test time until its video queries are known:
    # "auto" (the model's device up to 36 frames, else CPU memory while the video's features fit in
    # TEST_FEATURE_MEMORY_MB, else on CPU "disk" while the file takes at most half the free space of
    # TEST_STORE_DIR's disk and that folder is not a tmpfs, else "recompute"), "device", "cpu",
    # "disk" (a temporary file in TEST_STORE_DIR) or "recompute" (a second backbone +
    # pixel-decoder pass: memory and disk independent of the video length). MinVIS renders every
    # frame's masks at once and keeps no features.
    cfg.MODEL.VIS.TEST_FEATURE_STORE = "auto"
    cfg.MODEL.VIS.TEST_FEATURE_MEMORY_MB = 1024
    # Folder of the temporary files of long-video inference (RLE output masks, "disk" features);
    # empty: the system temporary folder (TMPDIR). The files have no name; they vanish with the
    # process.
    cfg.MODEL.VIS.TEST_STORE_DIR = ""
    # Frames per mask-upsampling step when the masks are rendered from stored features (VITA).
    cfg.MODEL.VIS.TEST_INTERPOLATE_CHUNK_SIZE = 5
    # Clip-based methods: window length and stride for videos longer than one window.
    cfg.MODEL.VIS.TEST_WINDOW_SIZE = 36
    cfg.MODEL.VIS.TEST_WINDOW_STRIDE = 18
    # Output masks as RLE in a temporary file (memory independent of the video length) instead of
    # bool [T, H, W] tensors per track (T x H x W bytes each); the evaluator and the demo take
    # either. Every method's Base config turns it on.
    cfg.MODEL.VIS.OUTPUT_RLE = False
    cfg.MODEL.VIS.MAX_NUM_TRACKS = 100  # cap on tracks kept per video

    # --- synthetic data ---
    cfg.DATASETS.SYNTHETIC_ROOT = ""  # empty: $VIS_ZOO_CACHE or ~/.cache/vis_zoo/synthetic


def get_vis_cfg(meta_architecture: Optional[str] = None) -> CN:
    """detectron2 defaults + the shared VIS keys + the keys of `meta_architecture`'s method.

    Also sets MODEL.META_ARCHITECTURE. None (or a meta-architecture that is not a VIS Zoo method)
    gives the shared keys only. Tools build configs with `vis_zoo.engine.setup.build_config`, which
    reads the meta-architecture from the config file and overrides first.
    """
    cfg = get_cfg()
    add_vis_config(cfg)
    if meta_architecture:
        cfg.MODEL.META_ARCHITECTURE = meta_architecture
        method = method_config(meta_architecture)
        if method is not None:
            method.add_config(cfg)
    return cfg


def num_classes_from_config(cfg: CN) -> int:
    """The number of foreground classes K of the model `cfg` builds.

    The value of the method's class-count key (`num_classes_key` of its registration); a value
    <= 0 means "from the data": len(thing_classes) of the first of DATASETS.TRAIN, DATASETS.TEST
    whose metadata has them. A meta-architecture without a registered key also takes it from the
    data. Raises a ValueError naming the key when neither gives a number.
    """
    method = _METHOD_CONFIGS.get(cfg.MODEL.META_ARCHITECTURE)
    key = method.num_classes_key if method is not None else None
    if key is not None:
        value = cfg
        for part in key.split("."):
            value = value[part]
        if int(value) > 0:
            return int(value)
    from detectron2.data import MetadataCatalog

    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes:
            return len(classes)
    where = f"{key} <= 0 and " if key else ""
    raise ValueError(
        f"{where}no thing_classes in the metadata of the datasets {names}: cannot tell "
        f"the number of classes of {cfg.MODEL.META_ARCHITECTURE}"
    )
