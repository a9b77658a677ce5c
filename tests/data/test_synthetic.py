"""The synthetic dataset: determinism, content, registration, lazy atomic caching, the CLI tool."""

import json
import os
import threading

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from vis_zoo.data.datasets.synthetic import ANNOTATION_FILE
from vis_zoo.data.datasets import (
    OCCLUSION_LEVELS,
    SYNTHETIC_CATEGORIES,
    SYNTHETIC_SPLITS,
    ensure_synthetic_split,
    generate_synthetic_vis,
    get_synthetic_root,
    load_ytvis_json,
    set_synthetic_root,
)

SMALL = dict(num_videos=4, min_length=4, max_length=8, height=64, width=80)


def _decode(segm, height, width):
    if isinstance(segm, list):
        return mask_util.decode(mask_util.merge(mask_util.frPyObjects(segm, height, width))).astype(
            bool
        )
    return mask_util.decode(segm).astype(bool)


def _tracks(video):
    """track id -> (category, list of frame indices where present)."""
    out = {}
    for t, objs in enumerate(video["annotations"]):
        for o in objs:
            out.setdefault(o["id"], (o["category_id"], []))[1].append(t)
    return out


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    a = generate_synthetic_vis(str(tmp_path / "a"), seed=5, **SMALL)
    b = generate_synthetic_vis(str(tmp_path / "b"), seed=5, **SMALL)
    c = generate_synthetic_vis(str(tmp_path / "c"), seed=6, **SMALL)
    with open(a, "rb") as fa, open(b, "rb") as fb, open(c, "rb") as fc:
        ja, jb, jc = fa.read(), fb.read(), fc.read()
    assert ja == jb
    assert ja != jc
    frame = os.path.join("JPEGImages", "video_0001", "00002.jpg")
    with open(tmp_path / "a" / frame, "rb") as fa, open(tmp_path / "b" / frame, "rb") as fb:
        assert fa.read() == fb.read()


@pytest.mark.parametrize("mask_format", ["rle", "compressed_rle", "polygon"])
def test_generated_json_loads_and_masks_match_boxes_and_frames(tmp_path, mask_format):
    json_file = generate_synthetic_vis(
        str(tmp_path / "d"), seed=1, mask_format=mask_format, **SMALL
    )
    dicts = load_ytvis_json(json_file, str(tmp_path / "d" / "JPEGImages"))
    assert len(dicts) == SMALL["num_videos"]
    num_objects = 0
    for video in dicts:
        assert SMALL["min_length"] <= video["length"] <= SMALL["max_length"]
        assert (video["height"], video["width"]) == (64, 80)
        for t, objs in enumerate(video["annotations"]):
            masks = [_decode(o["segmentation"], 64, 80) for o in objs]
            for o, m in zip(objs, masks):
                num_objects += 1
                assert m.any()
                ys, xs = np.nonzero(m)
                box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                np.testing.assert_allclose(o["bbox"], box)
                assert 0 <= o["category_id"] < len(SYNTHETIC_CATEGORIES)
                assert o["occlusion"] in OCCLUSION_LEVELS
            if mask_format != "polygon":  # visible masks of one frame never overlap (depth order)
                if masks:
                    assert np.stack(masks).sum(0).max() <= 1
        image = cv2.imread(video["file_names"][0])
        assert image is not None and image.shape == (64, 80, 3)
    assert num_objects > 20


def test_objects_differ_from_background_in_the_frames(tmp_path):
    """Masks must sit on the drawn shapes: colour saturation inside masks is far above outside."""
    json_file = generate_synthetic_vis(
        str(tmp_path / "d"), seed=2, mask_format="compressed_rle", **SMALL
    )
    dicts = load_ytvis_json(json_file, str(tmp_path / "d" / "JPEGImages"))
    inside, outside = [], []
    for video in dicts:
        for t, objs in enumerate(video["annotations"]):
            if not objs:
                continue
            hsv = cv2.cvtColor(cv2.imread(video["file_names"][t]), cv2.COLOR_BGR2HSV)[
                ..., 1
            ].astype(float)
            union = np.zeros((64, 80), dtype=bool)
            for o in objs:
                union |= _decode(o["segmentation"], 64, 80)
            inside.append(hsv[union].mean())
            outside.append(hsv[~union].mean())
    assert np.mean(inside) > 2 * np.mean(outside)


def test_registered_splits_content(synthetic_root):
    assert get_synthetic_root() == synthetic_root
    train = DatasetCatalog.get("synthetic_vis_train")
    assert len(train) == SYNTHETIC_SPLITS["train"]["num_videos"]
    lengths = [v["length"] for v in train]
    assert min(lengths) >= 5 and max(lengths) <= 30 and len(set(lengths)) > 5
    assert all(v["file_names"][0].startswith(synthetic_root) for v in train)

    same_category_videos = entering = leaving = gaps = 0
    categories, levels = set(), set()
    for video in train:
        tracks = _tracks(video)
        cats = [c for c, _ in tracks.values()]
        categories.update(cats)
        same_category_videos += len(set(cats)) < len(cats)
        for _, frames in tracks.values():
            entering += frames[0] > 0
            leaving += frames[-1] < video["length"] - 1
            gaps += frames[-1] - frames[0] + 1 > len(frames)
        levels.update(o["occlusion"] for objs in video["annotations"] for o in objs)
    assert categories == set(range(len(SYNTHETIC_CATEGORIES)))
    assert same_category_videos >= 5
    assert entering >= 5 and leaving >= 5  # null segmentations before/after a track
    assert gaps >= 3  # hidden behind the pole for a while, then visible again
    assert levels == set(OCCLUSION_LEVELS)

    meta = MetadataCatalog.get("synthetic_vis_val")
    assert meta.evaluator_type == "ytvis" and meta.dataset_kind == "video"
    assert meta.thing_classes == [c["name"] for c in SYNTHETIC_CATEGORIES]
    assert os.path.isfile(meta.json_file) and meta.json_file.startswith(synthetic_root)
    assert len(DatasetCatalog.get("synthetic_vis_val")) == SYNTHETIC_SPLITS["val"]["num_videos"]


def test_long_split_has_videos_over_100_frames(synthetic_root):
    long_videos = DatasetCatalog.get("synthetic_vis_long")
    assert len(long_videos) == SYNTHETIC_SPLITS["long"]["num_videos"]
    assert all(100 <= v["length"] <= 150 for v in long_videos)
    assert all(len(v["annotations"]) == v["length"] for v in long_videos)


def test_image_split_is_coco_style(synthetic_root):
    images = DatasetCatalog.get("synthetic_img_train")
    meta = MetadataCatalog.get("synthetic_img_train")
    assert meta.dataset_kind == "image" and len(meta.thing_classes) == 5
    assert len(images) == 100
    d = images[0]
    assert {"file_name", "height", "width", "image_id", "annotations"} <= set(d)
    assert os.path.isfile(d["file_name"])
    objs = [o for im in images for o in im["annotations"]]
    assert len(objs) > 100
    assert all(isinstance(o["segmentation"], list) and len(o["bbox"]) == 4 for o in objs)
    assert {o["category_id"] for o in objs} == set(range(5))


def test_generation_writes_one_jpeg_per_frame(tmp_path):
    # How fast generation is (about 2 s for train + val) is measured by
    # tools/make_synthetic_dataset.py,
    # which prints the time per split, not asserted here: wall time on a shared CI machine is noise.
    for split in ("train", "val"):
        out = str(tmp_path / split)
        generate_synthetic_vis(out, **SYNTHETIC_SPLITS[split])
        with open(os.path.join(out, ANNOTATION_FILE)) as f:
            data = json.load(f)
        expected = sorted(
            os.path.normpath(os.path.join(out, "JPEGImages", name))
            for v in data["videos"]
            for name in v["file_names"]
        )
        written = sorted(
            os.path.normpath(os.path.join(root, n))
            for root, _, names in os.walk(os.path.join(out, "JPEGImages"))
            for n in names
        )
        assert written == expected
        assert len(data["videos"]) == SYNTHETIC_SPLITS[split]["num_videos"]


def test_cache_root_resolution_and_racing_generation(tmp_path, monkeypatch):
    monkeypatch.setenv("VIS_ZOO_CACHE", str(tmp_path / "cache"))
    assert get_synthetic_root() == str(tmp_path / "cache" / "synthetic")
    set_synthetic_root(str(tmp_path / "explicit"))
    try:
        assert get_synthetic_root() == str(tmp_path / "explicit")
    finally:
        set_synthetic_root(None)
    assert get_synthetic_root() == str(tmp_path / "cache" / "synthetic")

    # two concurrent first loads build the same split; exactly one copy survives, no temp dirs left
    results, errors = [], []

    def build():
        try:
            results.append(ensure_synthetic_split("val"))
        except Exception as e:  # noqa: BLE001 -- re-raised in the main thread via the assert
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results)) == 1
    parent = os.path.dirname(results[0])
    assert os.listdir(parent) == ["val"]
    # the metadata path follows the current root
    assert MetadataCatalog.get("synthetic_vis_val").json_file == os.path.join(
        results[0], "annotations.json"
    )
    assert len(DatasetCatalog.get("synthetic_vis_val")) == SYNTHETIC_SPLITS["val"]["num_videos"]


def test_make_synthetic_dataset_tool(tmp_path):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "make_synthetic_dataset.py")
    spec = importlib.util.spec_from_file_location("make_synthetic_dataset", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "out"
    assert (
        tool.main(
            [
                "--out",
                str(out),
                "--split",
                "val",
                "--num-videos",
                "3",
                "--seed",
                "9",
                "--height",
                "48",
                "--width",
                "64",
            ]
        )
        == 0
    )
    dicts = load_ytvis_json(str(out / "val" / "annotations.json"), str(out / "val" / "JPEGImages"))
    assert len(dicts) == 3 and dicts[0]["height"] == 48 and dicts[0]["width"] == 64
    with pytest.raises(FileExistsError):
        tool.main(["--out", str(out), "--split", "val", "--num-videos", "3"])
    assert tool.main(["--out", str(out), "--split", "val", "--num-videos", "2", "--overwrite"]) == 0
    assert (
        len(load_ytvis_json(str(out / "val" / "annotations.json"), str(out / "val" / "JPEGImages")))
        == 2
    )
