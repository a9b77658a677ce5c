"""Video datasets: YouTube-VIS/OVIS loading and validation, built-in splits, synthetic data.

Importing this package registers (without touching the disk) the built-in YouTube-VIS 2019/2021/2022
and OVIS splits, COCO relabelled to their categories (coco2ytvis2019_*, coco2ytvis2021_*,
coco2ovis_*; train and val) and the synthetic datasets (synthetic_vis_{train,val,long},
synthetic_img_train).
"""

from .builtin import BUILTIN_SPLITS, OVIS_CATEGORIES, YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES
from .builtin import register_all_builtin
from .coco_to_vis import (
    COCO_TO_OVIS,
    COCO_TO_VIS_SPLITS,
    COCO_TO_VIS_TARGETS,
    COCO_TO_YTVIS_2019,
    COCO_TO_YTVIS_2021,
    load_coco_json_for_vis,
    register_all_coco_to_vis,
    register_coco_to_vis_instances,
)
from .synthetic import (
    OCCLUSION_LEVELS,
    SYNTHETIC_CATEGORIES,
    SYNTHETIC_SPLITS,
    ensure_synthetic_split,
    generate_synthetic_images,
    generate_synthetic_vis,
    get_synthetic_root,
    load_synthetic_image_json,
    register_synthetic_datasets,
    set_synthetic_root,
)
from .ytvis import (
    category_metadata,
    load_ytvis_json,
    register_ytvis_instances,
    validate_segmentation,
)

register_all_builtin()
register_all_coco_to_vis()
register_synthetic_datasets()

__all__ = [
    "BUILTIN_SPLITS",
    "COCO_TO_OVIS",
    "COCO_TO_VIS_SPLITS",
    "COCO_TO_VIS_TARGETS",
    "COCO_TO_YTVIS_2019",
    "COCO_TO_YTVIS_2021",
    "OCCLUSION_LEVELS",
    "OVIS_CATEGORIES",
    "YTVIS_2019_CATEGORIES",
    "YTVIS_2021_CATEGORIES",
    "SYNTHETIC_CATEGORIES",
    "SYNTHETIC_SPLITS",
    "category_metadata",
    "ensure_synthetic_split",
    "generate_synthetic_images",
    "generate_synthetic_vis",
    "get_synthetic_root",
    "load_coco_json_for_vis",
    "load_synthetic_image_json",
    "load_ytvis_json",
    "register_all_builtin",
    "register_all_coco_to_vis",
    "register_coco_to_vis_instances",
    "register_synthetic_datasets",
    "register_ytvis_instances",
    "set_synthetic_root",
    "validate_segmentation",
]
