"""COCO images as extra training data for YouTube-VIS / OVIS models, in the target's label space.

VITA and SeqFormer train jointly on COCO images turned into pseudo-videos (`CocoClipDatasetMapper`),
restricted to the COCO categories that correspond to a category of the video dataset. The tables
below are those of the official VITA code (`COCO_TO_YTVIS_2019`, `COCO_TO_YTVIS_2021`,
`COCO_TO_OVIS`): COCO category id -> target dataset category id (not contiguous ids). A few entries
are many-to-one or not name-for-name, as in the official code, and are kept that way on purpose:

    YouTube-VIS 2019/2021: bicycle and motorcycle -> motorbike, skis and snowboard -> snowboard,
                           car -> sedan (2019); frisbee -> flying_disc (2021 only)
    OVIS:                  car, bus and truck -> Vehical; COCO bird is *not* mapped to OVIS Bird

Where the official code converts the COCO JSON once into `coco2ytvis2019_train.json` etc., we read
the standard COCO annotation file and filter it at load time, so no conversion step is needed::

    $DETECTRON2_DATASETS/coco/{train2017,val2017}/
    $DETECTRON2_DATASETS/coco/annotations/instances_{train,val}2017.json

Loading keeps the annotations whose category is mapped, sets `category_id` to the target's
contiguous id (0..K-1), and drops images left without annotations. The metadata is the target's
(`thing_classes`, `thing_dataset_id_to_contiguous_id`, `evaluator_type`) with `dataset_kind:
"image"`, so the training loader maps these datasets with `CocoClipDatasetMapper`. Registration
reads nothing.
"""

import logging
import os
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from detectron2.data import DatasetCatalog, MetadataCatalog

from .builtin import OVIS_CATEGORIES, YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES, datasets_root
from .ytvis import category_metadata

logger = logging.getLogger(__name__)

__all__ = [
    "COCO_TO_YTVIS_2019",
    "COCO_TO_YTVIS_2021",
    "COCO_TO_OVIS",
    "COCO_TO_VIS_TARGETS",
    "COCO_TO_VIS_SPLITS",
    "load_coco_json_for_vis",
    "register_coco_to_vis_instances",
    "register_all_coco_to_vis",
]

# COCO id -> YouTube-VIS 2019 id (21 COCO categories onto 19 targets).
COCO_TO_YTVIS_2019: Dict[int, int] = {
    1: 1,  # person -> person
    2: 21,  # bicycle -> motorbike
    3: 6,  # car -> sedan
    4: 21,  # motorcycle -> motorbike
    5: 28,  # airplane
    7: 17,  # train
    8: 29,  # truck
    9: 34,  # boat
    17: 14,  # cat
    18: 8,  # dog
    19: 18,  # horse
    21: 15,  # cow
    22: 32,  # elephant
    23: 20,  # bear
    24: 30,  # zebra
    25: 22,  # giraffe
    35: 33,  # skis -> snowboard
    36: 33,  # snowboard
    41: 5,  # skateboard
    42: 27,  # surfboard
    43: 40,  # tennis racket -> tennis_racket
}

# COCO id -> YouTube-VIS 2021 id (23 COCO categories onto 21 targets; 2022 uses the same
# categories).
COCO_TO_YTVIS_2021: Dict[int, int] = {
    1: 26,  # person
    2: 23,  # bicycle -> motorbike
    3: 5,  # car
    4: 23,  # motorcycle -> motorbike
    5: 1,  # airplane
    7: 36,  # train
    8: 37,  # truck
    9: 4,  # boat
    16: 3,  # bird
    17: 6,  # cat
    18: 9,  # dog
    19: 19,  # horse
    21: 7,  # cow
    22: 12,  # elephant
    23: 2,  # bear
    24: 40,  # zebra
    25: 18,  # giraffe
    34: 14,  # frisbee -> flying_disc
    35: 31,  # skis -> snowboard
    36: 31,  # snowboard
    41: 29,  # skateboard
    42: 33,  # surfboard
    43: 34,  # tennis racket -> tennis_racket
}

# COCO id -> OVIS id (17 COCO categories onto 15 targets).
COCO_TO_OVIS: Dict[int, int] = {
    1: 1,  # person -> Person
    2: 21,  # bicycle -> Bicycle
    3: 25,  # car -> Vehical
    4: 22,  # motorcycle -> Motorcycle
    5: 23,  # airplane -> Airplane
    6: 25,  # bus -> Vehical
    8: 25,  # truck -> Vehical
    9: 24,  # boat -> Boat
    17: 3,  # cat
    18: 4,  # dog
    19: 5,  # horse
    20: 6,  # sheep
    21: 7,  # cow
    22: 8,  # elephant
    23: 9,  # bear
    24: 10,  # zebra
    25: 11,  # giraffe
}

# target key -> (mapping, target categories, target evaluator type)
COCO_TO_VIS_TARGETS: Dict[str, Tuple[Dict[int, int], List[Dict], str]] = {
    "ytvis_2019": (COCO_TO_YTVIS_2019, YTVIS_2019_CATEGORIES, "ytvis"),
    "ytvis_2021": (COCO_TO_YTVIS_2021, YTVIS_2021_CATEGORIES, "ytvis"),
    "ovis": (COCO_TO_OVIS, OVIS_CATEGORIES, "ovis"),
}

# name -> (image_root, json_file) relative to the datasets root, target key. The names (train and
# val for each target) are those of the official VITA code.
COCO_TO_VIS_SPLITS: Dict[str, Tuple[str, str, str]] = {
    f"coco2{prefix}_{split}": (
        f"coco/{split}2017",
        f"coco/annotations/instances_{split}2017.json",
        target,
    )
    for prefix, target in (
        ("ytvis2019", "ytvis_2019"),
        ("ytvis2021", "ytvis_2021"),
        ("ovis", "ovis"),
    )
    for split in ("train", "val")
}

CategorySpec = Union[str, Sequence[Mapping[str, Any]]]


def _resolve_target(target: CategorySpec) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """(category list, evaluator type or None) of a category list or a registered dataset's name."""
    if isinstance(target, str):
        meta = MetadataCatalog.get(target)
        classes = meta.get("thing_classes", None)
        id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
        if classes is None or id_map is None:
            raise ValueError(
                f"target dataset '{target}' has no thing_classes / "
                "thing_dataset_id_to_contiguous_id in "
                "its metadata yet; pass its category list ([{'id', 'name'}, ...]) instead"
            )
        cats = [{"id": int(did), "name": classes[cid]} for did, cid in id_map.items()]
        return cats, meta.get("evaluator_type", None)
    cats = [dict(c) for c in target]
    if not cats or not all("id" in c and "name" in c for c in cats):
        raise ValueError("target categories must be a non-empty list of {'id', 'name'} dicts")
    return cats, None


def _check_mapping(mapping: Mapping[int, int], target_ids, where: str) -> Dict[int, int]:
    """The mapping as a plain {int: int} dict; every value must be a target category id."""
    if not isinstance(mapping, Mapping) or len(mapping) == 0:
        raise ValueError(f"{where}: the category mapping must be a non-empty dict, got {mapping!r}")
    checked = {}
    for src, dst in mapping.items():
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (src, dst)):
            raise ValueError(
                f"{where}: category mapping entries must be int -> int, got {src!r} -> {dst!r}"
            )
        if dst not in target_ids:
            raise ValueError(
                f"{where}: the mapping sends source category {src} to {dst}, which is not a "
                "category id "
                f"of the target (target ids: {sorted(target_ids)})"
            )
        checked[src] = dst
    return checked


def load_coco_json_for_vis(
    json_file: str,
    image_root: str,
    mapping: Mapping[int, int],
    target_categories: CategorySpec,
    dataset_name: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Load a COCO-format instances JSON restricted and relabelled to a video dataset's categories.

    Args:
        json_file: COCO-format annotation file (read with detectron2's `load_coco_json`).
        image_root: directory the images' `file_name`s are joined to.
        mapping: source category id (as in the JSON) -> target dataset category id; several source
            ids may map to one target id.
        target_categories: the target's `[{"id", "name"}, ...]`, or the name of a registered dataset
            whose metadata has `thing_classes` and `thing_dataset_id_to_contiguous_id`.
        dataset_name: only used in log and error messages.

    Returns:
        detectron2 image dicts (`file_name`, `height`, `width`, `image_id`, `annotations`) holding
        only the mapped annotations, each with `category_id` the target's contiguous id (0..K-1);
        images without any mapped annotation are dropped.

    Raises:
        FileNotFoundError naming the JSON when it is missing; ValueError naming it when a mapped id
        is not a category of the target, when no mapping key is a category of the JSON (keys that
        are not are only logged, for JSONs with a subset of the categories), or when no annotation
        is left.
    """
    from detectron2.data.datasets.coco import load_coco_json

    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    where = f"{json_file}" + (f" (dataset '{dataset_name}')" if dataset_name else "")
    categories, _ = _resolve_target(target_categories)
    target_map = category_metadata(categories)["thing_dataset_id_to_contiguous_id"]
    mapping = _check_mapping(mapping, target_map, where)
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{where}: COCO annotation file not found")

    # Let detectron2 read the file under a scratch name, so its category list comes back (as that
    # name's metadata) without reading the JSON twice; annotations then hold contiguous source ids.
    scratch = f"__coco_source_{uuid.uuid4().hex}"
    try:
        dicts = load_coco_json(json_file, image_root, dataset_name=scratch)
        source_meta = MetadataCatalog.get(scratch)
        source_ids = {
            cid: did for did, cid in source_meta.thing_dataset_id_to_contiguous_id.items()
        }
        source_names = {did: source_meta.thing_classes[cid] for cid, did in source_ids.items()}
    finally:
        MetadataCatalog.remove(scratch)
    present = set(mapping) & set(source_names)
    if not present:
        raise ValueError(
            f"{where}: none of the mapping's source categories {sorted(mapping)} is a category of "
            f"this JSON (its ids: {sorted(source_names)}); is the mapping for another id space?"
        )
    missing = sorted(set(mapping) - present)
    if missing:  # a JSON with a subset of the categories is fine, but say so
        logger.warning(
            "%s: mapped source categories %s are not categories of this JSON", where, missing
        )

    kept_dicts, num_annos, num_kept = [], 0, 0
    for record in dicts:
        annos = record.get("annotations", [])
        num_annos += len(annos)
        kept = []
        for anno in annos:
            src = source_ids[anno["category_id"]]
            if src in mapping:
                kept.append(dict(anno, category_id=target_map[mapping[src]]))
        if kept:
            kept_dicts.append(dict(record, annotations=kept))
            num_kept += len(kept)
    if not kept_dicts:
        raise ValueError(f"{where}: no annotation has a mapped category; nothing to train on")
    logger.info(
        "%s: kept %d of %d images and %d of %d annotations (%d source categories -> %d target "
        "categories)",
        where,
        len(kept_dicts),
        len(dicts),
        num_kept,
        num_annos,
        len(mapping),
        len(set(mapping.values())),
    )
    return kept_dicts


def register_coco_to_vis_instances(
    name: str,
    json_file: str,
    image_root: str,
    mapping: Mapping[int, int],
    target_categories: CategorySpec,
    *,
    evaluator_type: Optional[str] = None,
    metadata: Optional[Dict[str, Any]] = None,
) -> None:
    """Register a COCO-format image dataset relabelled to a video dataset's categories.

    Nothing is read from disk (the mapping is checked against the target categories right away);
    see `load_coco_json_for_vis` for what loading does. The metadata is the target's `thing_classes`
    and `thing_dataset_id_to_contiguous_id`, `dataset_kind="image"` (so training uses
    `CocoClipDatasetMapper`), `evaluator_type` (given, else the target dataset's, else "ytvis"),
    `category_mapping` (the mapping), `json_file`, `image_root`, and `metadata` on top.

    Example, COCO -> your own video dataset "my_vis_train" (registered with its categories)::

        register_coco_to_vis_instances("coco2myvis_train",
        "coco/annotations/instances_train2017.json",
                                       "coco/train2017", {1: 1, 18: 2}, "my_vis_train")
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty str, got {name!r}")
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    categories, target_evaluator = _resolve_target(target_categories)
    cat_meta = category_metadata(categories)
    mapping = _check_mapping(
        mapping, cat_meta["thing_dataset_id_to_contiguous_id"], f"{json_file} (dataset '{name}')"
    )
    DatasetCatalog.register(
        name, lambda: load_coco_json_for_vis(json_file, image_root, mapping, categories, name)
    )
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        dataset_kind="image",
        evaluator_type=evaluator_type or target_evaluator or "ytvis",
        category_mapping=dict(mapping),
        **cat_meta,
        **(metadata or {}),
    )


def register_all_coco_to_vis(root: Optional[str] = None) -> None:
    """Register coco2ytvis2019_*, coco2ytvis2021_*, coco2ovis_* (train and val; idempotent)."""
    root = datasets_root() if root is None else root
    for name, (image_root, json_file, target) in COCO_TO_VIS_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        mapping, categories, evaluator_type = COCO_TO_VIS_TARGETS[target]
        register_coco_to_vis_instances(
            name,
            os.path.join(root, json_file),
            os.path.join(root, image_root),
            mapping,
            categories,
            evaluator_type=evaluator_type,
            metadata={"target_dataset": target},
        )
