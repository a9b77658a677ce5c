"""YouTube-VIS JSON loading/validation and the built-in dataset registrations."""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from vis_zoo.data.datasets import BUILTIN_SPLITS, load_ytvis_json, register_ytvis_instances

H, W = 24, 32


def _rect_mask(x0, y0, x1, y1):
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _uncompressed(mask):
    flat = mask.ravel(order="F")
    runs, value, count = [], 0, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    return {"counts": [int(r) for r in runs], "size": [H, W]}


def _compressed(mask):
    rle = mask_util.encode(np.asfortranarray(mask))
    return {"counts": rle["counts"].decode("ascii"), "size": [H, W]}


def _base_json():
    """Two videos (3 and 2 frames); categories listed out of id order on purpose."""
    m1 = _rect_mask(2, 3, 10, 9)
    m2 = _rect_mask(12, 4, 20, 15)
    return {
        "videos": [
            {
                "id": 5,
                "file_names": ["a/0.jpg", "a/1.jpg", "a/2.jpg"],
                "height": H,
                "width": W,
                "length": 3,
            },
            {"id": 2, "file_names": ["b/0.jpg", "b/1.jpg"], "height": H, "width": W, "length": 2},
        ],
        "annotations": [
            {
                "id": 11,
                "video_id": 5,
                "category_id": 7,
                "iscrowd": 0,
                "segmentations": [_uncompressed(m1), None, _compressed(m1)],
                "bboxes": [[2, 3, 8, 6], None, [2, 3, 8, 6]],
                "occlusion": ["no_occlusion", None, "severe_occlusion"],
            },  # OVIS per-frame labels
            {
                "id": 12,
                "video_id": 5,
                "category_id": 3,
                "iscrowd": 0,
                "segmentations": [None, _compressed(m2), _compressed(m2)],
                "bboxes": None,
            },
            {
                "id": 13,
                "video_id": 2,
                "category_id": 7,
                "iscrowd": 0,
                "segmentations": [[[2.0, 3.0, 10.0, 3.0, 10.0, 9.0, 2.0, 9.0]], None],
                "bboxes": [[2, 3, 8, 6], None],
            },
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }


def _write(tmp_path, data, frames=True):
    """Write `data` as JSON and (optionally) empty frame files; return (json_file, image_root)."""
    root = tmp_path / "images"
    if frames:
        for vid in data.get("videos") or []:
            for name in vid.get("file_names", []):
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
    json_file = tmp_path / "ann.json"
    json_file.write_text(json.dumps(data))
    return str(json_file), str(root)


def test_loads_dataset_dicts_per_contract(tmp_path):
    json_file, image_root = _write(tmp_path, _base_json())
    dicts = load_ytvis_json(json_file, image_root, dataset_name="test_vis_contract")
    assert [d["video_id"] for d in dicts] == [2, 5]  # sorted by id
    v5 = dicts[1]
    assert v5["length"] == 3 and (v5["height"], v5["width"]) == (H, W)
    assert v5["file_names"] == [
        os.path.join(os.path.abspath(image_root), f"a/{i}.jpg") for i in range(3)
    ]
    assert len(v5["annotations"]) == 3
    # frame 0: only track 11; frame 1: only track 12; frame 2: both, in JSON order
    assert [o["id"] for o in v5["annotations"][0]] == [11]
    assert [o["id"] for o in v5["annotations"][1]] == [12]
    assert [o["id"] for o in v5["annotations"][2]] == [11, 12]
    obj = v5["annotations"][0][0]
    # ids sorted: 3 (cat) -> 0, 7 (dog) -> 1
    assert obj["category_id"] == 1 and v5["annotations"][1][0]["category_id"] == 0
    assert obj["bbox"] == [2.0, 3.0, 8.0, 6.0] and obj["bbox_mode"] == BoxMode.XYWH_ABS
    assert (
        obj["occlusion"] == "no_occlusion"
        and v5["annotations"][2][0]["occlusion"] == "severe_occlusion"
    )
    assert "occlusion" not in v5["annotations"][1][0]
    # bboxes: null -> computed from the mask
    assert v5["annotations"][1][0]["bbox"] == [12.0, 4.0, 8.0, 11.0]
    meta = MetadataCatalog.get("test_vis_contract")
    assert meta.thing_classes == ["cat", "dog"]
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}


def test_polygon_uncompressed_and_compressed_rle_give_the_same_mask(tmp_path):
    mask = mask_util.decode(
        mask_util.merge(mask_util.frPyObjects([[3.0, 2.0, 17.0, 5.0, 9.0, 20.0]], H, W))
    )
    assert mask.sum() > 20
    polygon = [[3.0, 2.0, 17.0, 5.0, 9.0, 20.0]]
    data = _base_json()
    data["videos"] = data["videos"][:1]
    data["annotations"] = [
        {"id": i + 1, "video_id": 5, "category_id": 3, "segmentations": [segm, None, None]}
        for i, segm in enumerate([polygon, _uncompressed(mask), _compressed(mask)])
    ]
    json_file, image_root = _write(tmp_path, data)
    objs = load_ytvis_json(json_file, image_root)[0]["annotations"][0]
    assert objs[0]["segmentation"] == polygon
    assert isinstance(objs[1]["segmentation"]["counts"], str)  # uncompressed -> compressed
    decoded = [
        mask_util.decode(mask_util.merge(mask_util.frPyObjects(o["segmentation"], H, W)))
        if isinstance(o["segmentation"], list)
        else mask_util.decode(o["segmentation"])
        for o in objs
    ]
    for d in decoded:
        np.testing.assert_array_equal(d, mask)
    boxes = [o["bbox"] for o in objs]
    assert boxes[0] == boxes[1] == boxes[2]


@pytest.mark.parametrize("annotations", ["missing", None])
def test_unlabelled_json_gives_dicts_without_annotations(tmp_path, annotations):
    data = _base_json()
    if annotations == "missing":  # YouTube-VIS valid/test
        del data["annotations"]
    else:  # OVIS valid/test: "annotations": null
        data["annotations"] = None
    json_file, image_root = _write(tmp_path, data)
    dicts = load_ytvis_json(json_file, image_root)
    assert len(dicts) == 2 and all("annotations" not in d for d in dicts)


def _corrupt(data, case):
    """Apply one defect; return (data, expected exception type, substrings the message must
    name)."""
    ann0 = data["annotations"][0]
    if case == "segmentations_length":
        ann0["segmentations"] = ann0["segmentations"][:2]
        return ValueError, ["video 5", "annotation 11", "'segmentations'", "2 entries", "3 frames"]
    if case == "bboxes_length":
        ann0["bboxes"] = ann0["bboxes"] + [None]
        return ValueError, ["video 5", "annotation 11", "'bboxes'", "4 entries"]
    if case == "occlusion_length":
        ann0["occlusion"] = ["no_occlusion"]
        return ValueError, ["video 5", "annotation 11", "'occlusion'"]
    if case == "unknown_category":
        ann0["category_id"] = 99
        return ValueError, ["video 5", "annotation 11", "category_id 99"]
    if case == "rle_wrong_size":
        ann0["segmentations"][0]["size"] = [H + 1, W]
        return ValueError, [
            "video 5",
            "annotation 11",
            "frame 0",
            "a/0.jpg",
            "'segmentations'",
            "size",
        ]
    if case == "rle_counts_sum":
        ann0["segmentations"][0]["counts"][-1] += 5
        return ValueError, ["video 5", "frame 0", "'segmentations'", "sum to"]
    if case == "rle_negative_count":
        ann0["segmentations"][0]["counts"][1] = -1
        return ValueError, ["video 5", "frame 0", "non-negative"]
    if case == "compressed_rle_short":
        ann0["segmentations"][2]["counts"] = _compressed(_rect_mask(2, 3, 10, 9))["counts"][:-1]
        return ValueError, ["video 5", "frame 2", "a/2.jpg", "'segmentations'"]
    if case == "compressed_rle_garbage":
        ann0["segmentations"][2]["counts"] = "~~~~"
        return ValueError, ["video 5", "frame 2", "'segmentations'"]
    if case == "rle_missing_counts":
        del ann0["segmentations"][0]["counts"]
        return ValueError, ["video 5", "frame 0", "'counts'"]
    if case == "polygon_odd":
        data["annotations"][2]["segmentations"][0] = [[2.0, 3.0, 10.0, 3.0, 10.0, 9.0, 2.0]]
        return ValueError, ["video 2", "annotation 13", "frame 0", "b/0.jpg", "odd number"]
    if case == "polygon_too_short":
        data["annotations"][2]["segmentations"][0] = [[2.0, 3.0, 10.0, 3.0]]
        return ValueError, ["video 2", "annotation 13", "frame 0", ">= 6"]
    if case == "polygon_empty":
        data["annotations"][2]["segmentations"][0] = []
        return ValueError, ["video 2", "annotation 13", "frame 0", "empty"]
    if case == "unknown_video":
        data["annotations"][1]["video_id"] = 77
        return ValueError, ["annotation 12", "video_id 77", "not in 'videos'"]
    if case == "empty_videos":
        data["videos"] = []
        return ValueError, ["'videos'", "empty"]
    if case == "length_vs_file_names":
        data["videos"][0]["length"] = 4
        return ValueError, ["video 5", "'length'", "'file_names'"]
    if case == "bad_bbox":
        ann0["bboxes"][0] = [1, 2, 3]
        return ValueError, ["video 5", "frame 0", "'bboxes'"]
    raise AssertionError(case)


ERROR_CASES = [
    "segmentations_length",
    "bboxes_length",
    "occlusion_length",
    "unknown_category",
    "rle_wrong_size",
    "rle_counts_sum",
    "rle_negative_count",
    "compressed_rle_short",
    "compressed_rle_garbage",
    "rle_missing_counts",
    "polygon_odd",
    "polygon_too_short",
    "polygon_empty",
    "unknown_video",
    "empty_videos",
    "length_vs_file_names",
    "bad_bbox",
]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_malformed_json_raises_naming_file_video_and_field(tmp_path, case):
    data = _base_json()
    exc_type, needles = _corrupt(data, case)
    json_file, image_root = _write(tmp_path, data)
    with pytest.raises(exc_type) as info:
        load_ytvis_json(json_file, image_root)
    message = str(info.value)
    assert json_file in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_base_json_is_valid(tmp_path):
    # guards the parametrized error tests: each one fails only because of its own defect
    json_file, image_root = _write(tmp_path, _base_json())
    assert len(load_ytvis_json(json_file, image_root)) == 2


def test_corrupt_and_missing_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"videos": [')
    with pytest.raises(ValueError, match="not valid JSON") as info:
        load_ytvis_json(str(bad), str(tmp_path))
    assert str(bad) in str(info.value)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_ytvis_json(str(tmp_path / "nope.json"), str(tmp_path))


def test_missing_frame_file_is_named(tmp_path):
    json_file, image_root = _write(tmp_path, _base_json())
    os.remove(os.path.join(image_root, "a", "1.jpg"))
    with pytest.raises(FileNotFoundError) as info:
        load_ytvis_json(json_file, image_root)
    message = str(info.value)
    assert "video 5" in message and "frame 1" in message and os.path.join("a", "1.jpg") in message
    # the check can be switched off (e.g. for a JSON-only inspection)
    assert len(load_ytvis_json(json_file, image_root, check_files=False)) == 2


def test_register_reads_categories_lazily_or_takes_them_from_metadata(tmp_path):
    json_file, image_root = _write(tmp_path, _base_json())
    register_ytvis_instances("test_vis_lazy_meta", {}, json_file, image_root)
    meta = MetadataCatalog.get("test_vis_lazy_meta")
    assert (
        meta.evaluator_type == "ytvis"
        and meta.dataset_kind == "video"
        and meta.json_file == json_file
    )
    assert meta.get("thing_classes") is None  # nothing read yet
    assert len(DatasetCatalog.get("test_vis_lazy_meta")) == 2
    assert meta.thing_classes == ["cat", "dog"]

    # given metadata wins: its mapping (here reversed) is what the loader applies
    given = {
        "thing_classes": ["dog", "cat"],
        "thing_dataset_id_to_contiguous_id": {7: 0, 3: 1},
        "evaluator_type": "ovis",
    }
    register_ytvis_instances("test_vis_given_meta", given, json_file, image_root)
    assert MetadataCatalog.get("test_vis_given_meta").evaluator_type == "ovis"
    v5 = [d for d in DatasetCatalog.get("test_vis_given_meta") if d["video_id"] == 5][0]
    assert v5["annotations"][0][0]["category_id"] == 0  # dog (id 7)
    assert MetadataCatalog.get("test_vis_given_meta").thing_classes == ["dog", "cat"]
    # registration of a path that does not exist is fine; loading it names the file
    register_ytvis_instances("test_vis_absent", {}, str(tmp_path / "absent.json"), image_root)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        DatasetCatalog.get("test_vis_absent")


EXPECTED_BUILTIN = {
    "ytvis_2019_train": (40, "ytvis"),
    "ytvis_2019_val": (40, "ytvis"),
    "ytvis_2021_train": (40, "ytvis"),
    "ytvis_2021_val": (40, "ytvis"),
    "ytvis_2022_val": (40, "ytvis"),
    "ovis_train": (25, "ovis"),
    "ovis_val": (25, "ovis"),
    "ovis_test": (25, "ovis"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_BUILTIN))
def test_builtin_datasets_registered_with_class_counts_and_evaluator(name):
    num_classes, evaluator = EXPECTED_BUILTIN[name]
    assert name in DatasetCatalog.list()
    meta = MetadataCatalog.get(name)
    assert len(meta.thing_classes) == num_classes
    assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(num_classes)}
    assert meta.evaluator_type == evaluator and meta.dataset_kind == "video"
    image_root, json_file = BUILTIN_SPLITS[name][:2]
    assert meta.json_file.endswith(json_file) and meta.image_root.endswith(image_root)


def test_builtin_category_names_and_layout():
    m19, m21, m22, ovis = (
        MetadataCatalog.get(n)
        for n in ("ytvis_2019_train", "ytvis_2021_train", "ytvis_2022_val", "ovis_val")
    )
    assert m19.thing_classes[0] == "person" and m19.thing_classes[-1] == "tennis_racket"
    assert m19.thing_classes[5] == "sedan" and m21.thing_classes[13] == "flying_disc"
    assert m21.thing_classes[-1] == "zebra" and m22.thing_classes == m21.thing_classes
    assert ovis.thing_classes[0] == "Person" and ovis.thing_classes[-1] == "Vehical"
    assert len(set(m19.thing_classes)) == 40 and len(set(ovis.thing_classes)) == 25
    assert MetadataCatalog.get("ovis_test").json_file.endswith(
        os.path.join("ovis", "annotations_test.json")
    )
    assert MetadataCatalog.get("ytvis_2019_val").image_root.endswith(
        os.path.join("ytvis_2019", "valid", "JPEGImages")
    )


def test_builtin_registration_touches_no_disk(tmp_path):
    """Registering under a root that does not exist works; only loading reads files."""
    import subprocess
    import sys

    missing = tmp_path / "no_such_datasets_dir"
    code = (
        "import vis_zoo\n"
        "from detectron2.data import MetadataCatalog, DatasetCatalog\n"
        "m = MetadataCatalog.get('ovis_train')\n"
        "assert m.json_file.startswith(%r), m.json_file\n"
        "assert len(m.thing_classes) == 25\n"
        "try:\n"
        "    DatasetCatalog.get('ovis_train')\n"
        "except FileNotFoundError as e:\n"
        "    assert 'annotations_train.json' in str(e)\n"
        "    print('lazy-ok')\n" % str(missing)
    )
    env = dict(os.environ, DETECTRON2_DATASETS=str(missing))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "lazy-ok" in out.stdout
    assert not missing.exists()
