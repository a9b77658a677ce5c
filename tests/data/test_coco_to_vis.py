"""COCO -> YouTube-VIS / OVIS category tables and the coco2ytvis2019/coco2ytvis2021/coco2ovis
datasets."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from tests.data.dataset_helpers import registering
from PIL import Image

from vis_zoo.config.defaults import add_vis_config
from vis_zoo.data.build import build_vis_train_loader, get_dataset_kind
from vis_zoo.data.dataset_mapper import CocoClipDatasetMapper
from vis_zoo.data.datasets import (
    COCO_TO_OVIS,
    COCO_TO_VIS_SPLITS,
    COCO_TO_VIS_TARGETS,
    COCO_TO_YTVIS_2019,
    COCO_TO_YTVIS_2021,
    OVIS_CATEGORIES,
    YTVIS_2019_CATEGORIES,
    YTVIS_2021_CATEGORIES,
    load_coco_json_for_vis,
    register_coco_to_vis_instances,
)

H, W = 48, 64
COCO_NAMES = {c["id"]: c["name"] for c in COCO_CATEGORIES if c["isthing"]}

# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
TABLES = {
    "ytvis_2019": (COCO_TO_YTVIS_2019, YTVIS_2019_CATEGORIES, 21),
    "ytvis_2021": (COCO_TO_YTVIS_2021, YTVIS_2021_CATEGORIES, 23),
    "ovis": (COCO_TO_OVIS, OVIS_CATEGORIES, 17),
}
# (COCO name, target name) pairs the official tables map although the names differ
SYNONYMS = {
    ("bicycle", "motorbike"),
    ("motorcycle", "motorbike"),
    ("car", "sedan"),
    ("skis", "snowboard"),
    ("frisbee", "flying_disc"),
    ("car", "vehical"),
    ("bus", "vehical"),
    ("truck", "vehical"),
}
# same name, not mapped: COCO "mouse" is the computer mouse; the official OVIS table leaves out bird
NOT_MAPPED_ALTHOUGH_SAME_NAME = {("ytvis_2019", "mouse"), ("ytvis_2021", "mouse"), ("ovis", "bird")}


def _norm(name):
    return name.lower().replace(" ", "_")


@pytest.mark.parametrize("target", sorted(TABLES))
def test_table_keys_are_coco_ids_and_values_target_ids(target):
    table, categories, count = TABLES[target]
    assert COCO_TO_VIS_TARGETS[target][0] is table and COCO_TO_VIS_TARGETS[target][1] is categories
    assert len(table) == count
    assert set(table) <= set(COCO_NAMES), sorted(set(table) - set(COCO_NAMES))
    assert set(table.values()) <= {c["id"] for c in categories}


@pytest.mark.parametrize("target", sorted(TABLES))
def test_table_names_match(target):
    table, categories, _ = TABLES[target]
    target_names = {c["id"]: _norm(c["name"]) for c in categories}
    for coco_id, target_id in table.items():
        pair = (_norm(COCO_NAMES[coco_id]), target_names[target_id])
        assert pair[0] == pair[1] or pair in SYNONYMS, (coco_id, target_id, pair)
    # every COCO category with a same-named target category is mapped onto it (known exceptions
    # aside)
    by_name = {n: i for i, n in target_names.items()}
    for coco_id, coco_name in COCO_NAMES.items():
        name = _norm(coco_name)
        if name in by_name and (target, name) not in NOT_MAPPED_ALTHOUGH_SAME_NAME:
            assert table.get(coco_id) == by_name[name], (coco_id, coco_name)


def test_table_spot_checks():
    person = 1
    assert YTVIS_2019_CATEGORIES[COCO_TO_YTVIS_2019[person] - 1]["name"] == "person"
    assert YTVIS_2021_CATEGORIES[COCO_TO_YTVIS_2021[person] - 1]["name"] == "person"
    assert OVIS_CATEGORIES[COCO_TO_OVIS[person] - 1]["name"] == "Person"
    assert (
        COCO_TO_YTVIS_2019[18] == 8 and COCO_TO_YTVIS_2021[18] == 9 and COCO_TO_OVIS[18] == 4
    )  # dog
    assert COCO_TO_YTVIS_2021[16] == 3 and 16 not in COCO_TO_YTVIS_2019  # bird: 2021 only
    assert COCO_TO_OVIS[3] == COCO_TO_OVIS[6] == COCO_TO_OVIS[8] == 25  # car, bus, truck -> Vehical


# ----------------------------------------------------------------------------------------------
# a tiny COCO dataset
# ----------------------------------------------------------------------------------------------
def _square_anno(ann_id, image_id, category_id, x0, y0, size, iscrowd=0):
    polygon = [x0, y0, x0 + size, y0, x0 + size, y0 + size, x0, y0 + size]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "iscrowd": iscrowd,
        "bbox": [x0, y0, size, size],
        "area": size * size,
        "segmentation": [polygon],
    }


def write_tiny_coco(root, split="train"):
    """COCO layout under `root`: coco/{split}2017/*.jpg and
    coco/annotations/instances_{split}2017.json.

    image 1: person, dog, chair (chair maps nowhere); image 2: chair only; image 3: bicycle, skis.
    The category list is a subset of COCO's, with bottle (44) but no bottle annotation.
    """
    image_dir = os.path.join(root, "coco", f"{split}2017")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.join(root, "coco", "annotations"), exist_ok=True)
    images = []
    for image_id in (1, 2, 3):
        name = f"{image_id:012d}.jpg"
        pixels = (np.random.RandomState(image_id).rand(H, W, 3) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(image_dir, name))
        images.append({"id": image_id, "file_name": name, "height": H, "width": W})
    annotations = [
        _square_anno(10, 1, 1, 4, 4, 30),  # person
        _square_anno(11, 1, 18, 36, 10, 20),  # dog
        _square_anno(12, 1, 62, 20, 30, 12),  # chair: dropped
        _square_anno(20, 2, 62, 8, 8, 16),  # chair only: image 2 dropped
        _square_anno(30, 3, 2, 2, 2, 24),  # bicycle
        _square_anno(31, 3, 35, 30, 20, 16),  # skis (not in OVIS)
    ]
    categories = [
        {"id": i, "name": COCO_NAMES[i], "supercategory": "x"} for i in (1, 2, 18, 35, 44, 62)
    ]
    json_file = os.path.join(root, "coco", "annotations", f"instances_{split}2017.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return json_file, image_dir


# image id -> expected target contiguous ids, per target (image 2 is gone everywhere)
EXPECTED = {
    "ytvis_2019": {1: [0, 7], 3: [20, 32]},  # person, dog; motorbike, snowboard
    "ytvis_2021": {1: [25, 8], 3: [22, 30]},
    "ovis": {1: [0, 3], 3: [20]},  # skis dropped too
}


@pytest.fixture
def registered():
    yield from registering("test_coco2vis", register_coco_to_vis_instances)


@pytest.mark.parametrize("target", sorted(EXPECTED))
def test_loading_remaps_and_drops(tmp_path, registered, target):
    json_file, image_dir = write_tiny_coco(str(tmp_path))
    mapping, categories, evaluator_type = COCO_TO_VIS_TARGETS[target]
    name = registered(json_file, image_dir, mapping, categories, evaluator_type=evaluator_type)
    meta = MetadataCatalog.get(name)
    assert meta.dataset_kind == "image" and get_dataset_kind(name) == "image"
    assert meta.evaluator_type == evaluator_type
    assert meta.thing_classes == [c["name"] for c in categories]
    assert meta.thing_dataset_id_to_contiguous_id == {c["id"]: c["id"] - 1 for c in categories}
    assert meta.json_file == json_file and meta.image_root == image_dir

    dicts = DatasetCatalog.get(name)
    assert {d["image_id"]: [a["category_id"] for a in d["annotations"]] for d in dicts} == EXPECTED[
        target
    ]
    for d in dicts:
        assert d["file_name"] == os.path.join(image_dir, f"{d['image_id']:012d}.jpg")
        assert (d["height"], d["width"]) == (H, W)
    # loading leaves the metadata the target's (detectron2's loader must not overwrite it)
    assert meta.thing_classes == [c["name"] for c in categories]
    assert not [n for n in MetadataCatalog.list() if n.startswith("__coco_source_")]


def test_mapper_and_loader_yield_clips_with_target_classes(tmp_path, registered):
    json_file, image_dir = write_tiny_coco(str(tmp_path))
    name = registered(json_file, image_dir, COCO_TO_YTVIS_2019, YTVIS_2019_CATEGORIES)
    dicts = DatasetCatalog.get(name)

    mapper = CocoClipDatasetMapper(
        is_train=True,
        sampling_frame_num=3,
        crop_size_range=(1.0, 1.0),
        min_sizes=(48,),
        max_size=100,
        random_flip=False,
    )
    for d in dicts:
        clip = mapper(d)
        assert len(clip["image"]) == len(clip["instances"]) == 3
        for inst in clip["instances"]:
            assert inst.gt_classes.tolist() == EXPECTED["ytvis_2019"][d["image_id"]]
            assert inst.gt_ids.tolist() == list(range(len(inst)))  # uncropped: every track present

    cfg = get_cfg()
    add_vis_config(cfg)
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.DATASET_RATIO = []
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    cfg.INPUT.PSEUDO.MIN_SIZE_TRAIN = (40,)
    cfg.INPUT.PSEUDO.MAX_SIZE_TRAIN = 100
    cfg.SEED = 0
    seen = set()
    for batch in itertools.islice(build_vis_train_loader(cfg), 4):
        for clip in batch:
            assert len(clip["instances"]) == 2
            for inst in clip["instances"]:
                assert inst.gt_classes.dtype == torch.int64
                assert inst.gt_classes.tolist() == EXPECTED["ytvis_2019"][clip["video_id"]]
            seen.add(clip["video_id"])
    assert seen == {1, 3}


def test_target_given_as_registered_dataset(tmp_path, registered):
    json_file, image_dir = write_tiny_coco(str(tmp_path))
    name = registered(json_file, image_dir, COCO_TO_OVIS, "ovis_train")
    meta = MetadataCatalog.get(name)
    assert meta.evaluator_type == "ovis" and len(meta.thing_classes) == 25
    assert meta.thing_classes[0] == "Person"
    assert {d["image_id"] for d in DatasetCatalog.get(name)} == {1, 3}


def test_errors_name_the_file(tmp_path, registered):
    json_file, image_dir = write_tiny_coco(str(tmp_path))
    # a mapped id that is not a category of the target: caught at registration, file named
    with pytest.raises(
        ValueError, match=r"instances_train2017\.json.*to 41, which is not a category id"
    ):
        registered(json_file, image_dir, {1: 41}, YTVIS_2019_CATEGORIES)
    with pytest.raises(ValueError, match="int -> int"):
        registered(json_file, image_dir, {"1": 1}, YTVIS_2019_CATEGORIES)
    # a missing JSON: registration is fine, loading names the file
    absent = str(tmp_path / "coco" / "annotations" / "absent.json")
    name = registered(absent, image_dir, COCO_TO_YTVIS_2019, YTVIS_2019_CATEGORIES)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        DatasetCatalog.get(name)
    # no mapping key is a category of the JSON (a mapping for another id space)
    with pytest.raises(
        ValueError, match=r"instances_train2017\.json.*none of the mapping's source"
    ):
        load_coco_json_for_vis(json_file, image_dir, {100: 1, 101: 28}, YTVIS_2019_CATEGORIES)
    # nothing left after filtering
    with pytest.raises(ValueError, match="no annotation has a mapped category"):
        load_coco_json_for_vis(json_file, image_dir, {44: 1}, YTVIS_2019_CATEGORIES)


# ----------------------------------------------------------------------------------------------
# built-in registrations
# ----------------------------------------------------------------------------------------------
BUILTIN = {
    "coco2ytvis2019_train": ("ytvis_2019", "train", "ytvis", 40),
    "coco2ytvis2019_val": ("ytvis_2019", "val", "ytvis", 40),
    "coco2ytvis2021_train": ("ytvis_2021", "train", "ytvis", 40),
    "coco2ytvis2021_val": ("ytvis_2021", "val", "ytvis", 40),
    "coco2ovis_train": ("ovis", "train", "ovis", 25),
    "coco2ovis_val": ("ovis", "val", "ovis", 25),
}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_registered_with_target_metadata(name):
    target, split, evaluator_type, num_classes = BUILTIN[name]
    assert name in DatasetCatalog.list() and set(COCO_TO_VIS_SPLITS) == set(BUILTIN)
    meta = MetadataCatalog.get(name)
    assert meta.dataset_kind == "image" and meta.evaluator_type == evaluator_type
    assert len(meta.thing_classes) == num_classes
    assert meta.thing_classes == MetadataCatalog.get(f"{target}_train").thing_classes
    assert meta.category_mapping == COCO_TO_VIS_TARGETS[target][0]
    assert meta.json_file.endswith(
        os.path.join("coco", "annotations", f"instances_{split}2017.json")
    )
    assert meta.image_root.endswith(os.path.join("coco", f"{split}2017"))


def test_builtin_loads_from_standard_coco_layout(tmp_path):
    """Under $DETECTRON2_DATASETS with the COCO layout, coco2ytvis2019_train loads in a fresh
    process."""
    write_tiny_coco(str(tmp_path))
    code = (
        "import vis_zoo\n"
        "from detectron2.data import DatasetCatalog\n"
        "dicts = DatasetCatalog.get('coco2ytvis2019_train')\n"
        "print(sorted((d['image_id'], [a['category_id'] for a in d['annotations']]) for d in "
        "dicts))\n"
        "try:\n"
        "    DatasetCatalog.get('coco2ovis_val')\n"
        "except FileNotFoundError as e:\n"
        "    assert 'instances_val2017.json' in str(e), e\n"
        "    print('missing-ok')\n"
    )
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[(1, [0, 7]), (3, [20, 32])]" in out.stdout and "missing-ok" in out.stdout
