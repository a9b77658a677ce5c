"""The registered synthetic datasets: synthetic_vis_{train,val,long} and synthetic_img_train.

Registration touches no file; a split is generated into the cache when it is first read.
"""

import json
import os
from typing import Any, Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.structures import BoxMode

from ..ytvis import category_metadata, load_ytvis_json, validate_segmentation
from .cache import SYNTHETIC_IMAGE_SPLITS, SYNTHETIC_SPLITS, ensure_synthetic_split
from .files import ANNOTATION_FILE, IMAGE_DIR
from .scene import SYNTHETIC_CATEGORIES

__all__ = ["load_synthetic_image_json", "register_synthetic_datasets"]


# ----------------------------------------------------------------------------------------------
def load_synthetic_image_json(json_file: str, image_root: str) -> List[Dict[str, Any]]:
    """COCO-format JSON -> detectron2 image dicts (`file_name`, `height`, `width`, `image_id`,
    `annotations` with `bbox` (XYWH_ABS), `bbox_mode`, `segmentation`, `category_id` (contiguous)).
    """
    with open(json_file) as f:
        data = json.load(f)
    id_map = category_metadata(data["categories"])["thing_dataset_id_to_contiguous_id"]
    per_image: Dict[int, List[Dict[str, Any]]] = {img["id"]: [] for img in data["images"]}
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    for ann in data["annotations"]:
        where = f"{json_file}: annotation {ann.get('id')} (image {ann.get('image_id')})"
        if ann.get("image_id") not in per_image:
            raise ValueError(f"{where}: image_id not in 'images'")
        if ann.get("category_id") not in id_map:
            raise ValueError(f"{where}: unknown category_id {ann.get('category_id')!r}")
        try:
            segm = validate_segmentation(ann["segmentation"], *sizes[ann["image_id"]])
        except ValueError as e:
            raise ValueError(f"{where}: bad 'segmentation': {e}") from None
        per_image[ann["image_id"]].append(
            {
                "id": ann["id"],
                "category_id": id_map[ann["category_id"]],
                "bbox": [float(v) for v in ann["bbox"]],
                "bbox_mode": BoxMode.XYWH_ABS,
                "segmentation": segm,
                "iscrowd": ann.get("iscrowd", 0),
            }
        )
    return [
        {
            "file_name": os.path.join(image_root, img["file_name"]),
            "height": img["height"],
            "width": img["width"],
            "image_id": img["id"],
            "annotations": per_image[img["id"]],
        }
        for img in data["images"]
    ]


# ----------------------------------------------------------------------------------------------
# registration
# ----------------------------------------------------------------------------------------------
class _SyntheticMetadata(Metadata):
    """Metadata whose `json_file`/`image_root` follow the current cache root.

    They are properties, so reading them (e.g. an evaluator opening the GT JSON) generates the split
    on first use, and a changed $VIS_ZOO_CACHE is honoured; plain Metadata could hold only one fixed
    path, set before the cache root is known.
    """

    @property
    def json_file(self) -> str:
        return os.path.join(ensure_synthetic_split(self.synthetic_split), ANNOTATION_FILE)

    @property
    def image_root(self) -> str:
        return os.path.join(ensure_synthetic_split(self.synthetic_split), IMAGE_DIR)


def _load_video_split(name: str, split: str) -> List[Dict[str, Any]]:
    out_dir = ensure_synthetic_split(split)
    return load_ytvis_json(
        os.path.join(out_dir, ANNOTATION_FILE), os.path.join(out_dir, IMAGE_DIR), name
    )


def _load_image_split(split: str) -> List[Dict[str, Any]]:
    out_dir = ensure_synthetic_split(split)
    return load_synthetic_image_json(
        os.path.join(out_dir, ANNOTATION_FILE), os.path.join(out_dir, IMAGE_DIR)
    )


def register_synthetic_datasets() -> None:
    """Register synthetic_vis_{train,val,long} and synthetic_img_train. Touches no files."""
    cat_meta = category_metadata(SYNTHETIC_CATEGORIES)
    for split in SYNTHETIC_SPLITS:
        name = f"synthetic_vis_{split}"
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name, split=split: _load_video_split(name, split))
        MetadataCatalog[name] = _SyntheticMetadata(
            name=name,
            synthetic_split=split,
            evaluator_type="ytvis",
            dataset_kind="video",
            **cat_meta,
        )
    for split in SYNTHETIC_IMAGE_SPLITS:
        name = f"synthetic_{split}"
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda split=split: _load_image_split(split))
        MetadataCatalog[name] = _SyntheticMetadata(
            name=name, synthetic_split=split, dataset_kind="image", **cat_meta
        )
