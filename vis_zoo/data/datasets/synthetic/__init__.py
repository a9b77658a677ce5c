"""A small synthetic video instance segmentation dataset, written as a real YouTube-VIS dataset.

Every video shows a few textured shapes (5 categories: disc, square, triangle, ring, cross, each
with its own colour family and fill pattern) moving over a textured, panning background. Objects
move linearly and bounce off the borders or cross the frame (entering and leaving, so their
`segmentations` are null there), change scale and brightness over time, appear late or vanish
early, and occlude each other by a fixed depth order; some videos have an unannotated foreground
pole that objects pass behind (disappearing for a while and coming back). Each annotation carries
OVIS-style per-frame `occlusion` labels as the OVIS JSONs do ("no_occlusion", "slight_occlusion":
<= 50% hidden, "severe_occlusion": > 50% hidden; null where absent).

The files are ordinary JPEG frames and a YouTube-VIS JSON, so the whole real pipeline (loader,
mapper, evaluator) runs on them. Generation is deterministic: the same arguments give a
byte-identical JSON (and identical frames with the same OpenCV build).

Registered datasets (generated lazily on first use into the cache, see `get_synthetic_root`):
    synthetic_vis_train  ~60 videos of 5-30 frames, uncompressed RLE (like YouTube-VIS train)
    synthetic_vis_val    ~20 videos of 5-30 frames, compressed RLE (like OVIS)
    synthetic_vis_long   4 videos of 100-150 frames
    synthetic_img_train  COCO-style image dataset (polygons) of single synthetic frames,
                         `dataset_kind` "image", for the COCO pseudo-video path

Modules: `scene` (what a video shows), `files` (writing a dataset as JPEGs + JSON, atomically),
`cache` (where the registered splits live; generated on first use), `register` (the datasets in
detectron2's catalogs, and the COCO-format image loader).
"""

from .cache import (
    SYNTHETIC_IMAGE_SPLITS,
    SYNTHETIC_SPLITS,
    ensure_synthetic_split,
    get_synthetic_root,
    set_synthetic_root,
)
from .files import ANNOTATION_FILE, GENERATOR_VERSION, IMAGE_DIR
from .files import generate_synthetic_images, generate_synthetic_vis
from .register import load_synthetic_image_json, register_synthetic_datasets
from .scene import OCCLUSION_LEVELS, SYNTHETIC_CATEGORIES

__all__ = [
    "ANNOTATION_FILE",
    "GENERATOR_VERSION",
    "IMAGE_DIR",
    "SYNTHETIC_IMAGE_SPLITS",
    "OCCLUSION_LEVELS",
    "SYNTHETIC_CATEGORIES",
    "SYNTHETIC_SPLITS",
    "generate_synthetic_vis",
    "generate_synthetic_images",
    "ensure_synthetic_split",
    "get_synthetic_root",
    "set_synthetic_root",
    "load_synthetic_image_json",
    "register_synthetic_datasets",
]
