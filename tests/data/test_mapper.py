"""YTVISDatasetMapper, clip augmentations, frame sampling and CocoClipDatasetMapper on tiny
fabricated videos (JPEG frames written to tmp_path)."""

import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, BoxMode
from tests.data.dataset_helpers import video_dataset_dict
from PIL import Image

from vis_zoo.config.defaults import add_vis_config
from vis_zoo.data.augmentation import (
    apply_clip_augmentations,
    build_clip_augmentation,
    transform_clip_annotations,
)
from vis_zoo.data.dataset_mapper import (
    CocoClipDatasetMapper,
    FrameReadError,
    YTVISDatasetMapper,
    sample_frame_indices,
)

H, W = 48, 64


def _write_frame(path, seed, height=H, width=W):
    rng = np.random.RandomState(seed)
    # Smooth-ish content so JPEG round trips stay close; exact pixels are not compared across files.
    image = (rng.rand(height, width, 3) * 255).astype(np.uint8)
    Image.fromarray(image).save(path, quality=95)
    return path


def _square_polygon(x0, y0, size):
    return [[x0, y0, x0 + size, y0, x0 + size, y0 + size, x0, y0 + size]]


def _anno(track_id, category_id, x0, y0, size, as_rle=False, height=H, width=W):
    if as_rle:
        mask = np.zeros((height, width), dtype=np.uint8, order="F")
        mask[y0 : y0 + size, x0 : x0 + size] = 1
        segm = mask_util.encode(mask)
        segm["counts"] = segm["counts"].decode("ascii")
    else:
        segm = _square_polygon(x0, y0, size)
    return {
        "id": track_id,
        "category_id": category_id,
        "bbox": [x0, y0, size, size],
        "bbox_mode": BoxMode.XYWH_ABS,
        "segmentation": segm,
        "iscrowd": 0,
    }


def make_video(tmp_path, length=4, same_frames=False, video_id=1, annotations=None):
    """A video dict: `length` JPEG frames; track 7 (class 2) in every frame, track 3 (class 0, RLE)
    only in frames 1 and 2 (unless `annotations` is given)."""
    folder = tmp_path / f"video{video_id}"
    folder.mkdir(exist_ok=True)
    files = [
        _write_frame(str(folder / f"{i:05d}.jpg"), 0 if same_frames else i) for i in range(length)
    ]
    if annotations is None:
        annotations = []
        for i in range(length):
            frame = [_anno(7, 2, 4 + i, 6, 16)]
            if i in (1, 2):
                frame.append(_anno(3, 0, 36, 20, 12, as_rle=True))
            annotations.append(frame)
    return video_dataset_dict(video_id, files, annotations, H, W)


def make_mapper(is_train=True, augmentations=None, **kwargs):
    if augmentations is None:
        augmentations = [T.ResizeShortestEdge([32], 1000, "choice")]
    return YTVISDatasetMapper(is_train=is_train, augmentations=augmentations, **kwargs)


# ---------------------------------------------------------------- frame sampling
@pytest.mark.parametrize("replace", [True, False])
def test_sampling_respects_range_and_is_sorted(replace):
    rng = np.random.RandomState(0)
    for _ in range(200):
        idx = sample_frame_indices(100, 5, 3, replace=replace, rng=rng)
        assert len(idx) == 5
        assert idx == sorted(idx)
        # Some frame is the reference and every frame is within 3 of it.
        assert any(max(abs(i - r) for i in idx) <= 3 for r in idx)
        assert max(idx) - min(idx) <= 6
        if not replace and 0 < min(idx) and max(idx) < 99:
            # Only a reference at the very edge (window of 3 < 4 frames) may repeat frames.
            assert len(set(idx)) == 5


def test_sampling_replacement_flag():
    rng = np.random.RandomState(0)
    with_repeats = [
        len(set(sample_frame_indices(50, 5, 2, replace=True, rng=rng))) < 5 for _ in range(200)
    ]
    # Window of 4 other frames, 4 draws with replacement: repeats are frequent (p ~ 0.9).
    assert np.mean(with_repeats) > 0.5
    for _ in range(200):
        idx = sample_frame_indices(50, 5, 2, replace=False, rng=rng)
        # Away from the ends the window holds 4 frames: no repeats. At the ends (window < 4) the
        # fallback takes the whole window, which then reaches frame 0 or 49.
        if min(idx) >= 1 and max(idx) <= 48:
            assert len(set(idx)) == 5


def test_sampling_short_video_and_shuffle():
    rng = np.random.RandomState(1)
    # T=6 > length=3: every frame used, the rest repeated; also without replacement (fallback).
    for replace in (True, False):
        for _ in range(50):
            idx = sample_frame_indices(3, 6, 20, replace=replace, rng=rng)
            assert len(idx) == 6 and set(idx) <= {0, 1, 2}
            if not replace:
                assert set(idx) == {0, 1, 2}
    assert sample_frame_indices(1, 4, 20, rng=rng) == [0, 0, 0, 0]
    shuffled = [
        sample_frame_indices(100, 5, 20, replace=False, shuffle=True, rng=rng) for _ in range(50)
    ]
    assert any(idx != sorted(idx) for idx in shuffled)


# ---------------------------------------------------------------- augmentation
def _cfg():
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_vis_config(cfg)
    return cfg


def test_build_clip_augmentation_from_cfg():
    cfg = _cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (32, 40)
    cfg.INPUT.MAX_SIZE_TRAIN = 100
    augs = build_clip_augmentation(cfg, is_train=True)
    assert [type(a) for a in augs] == [T.ResizeShortestEdge, T.RandomFlip]
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.CROP.ENABLED = True
    augs = build_clip_augmentation(cfg, is_train=True)
    assert [type(a) for a in augs] == [T.RandomCrop, T.ResizeShortestEdge]
    cfg.INPUT.RANDOM_FLIP = "flip"
    with pytest.raises(ValueError, match="RANDOM_FLIP"):
        build_clip_augmentation(cfg, is_train=True)
    test_augs = build_clip_augmentation(cfg, is_train=False)
    assert len(test_augs) == 1 and test_augs[0].short_edge == cfg.INPUT.MIN_SIZE_TEST
    assert test_augs[0].max_size == cfg.INPUT.MAX_SIZE_TEST and test_augs[0].rounding == "round"


def test_identical_frames_get_identical_augmentation(tmp_path):
    """Flip, random resize and crop are sampled once per clip: identical frames stay identical."""
    video = make_video(tmp_path, length=4, same_frames=True)
    augs = [
        T.RandomCrop("relative_range", (0.5, 0.5)),
        T.ResizeShortestEdge([24, 32, 40, 56], 1000, "choice"),
        T.RandomFlip(0.5),
    ]
    mapper = make_mapper(augmentations=augs, sampling_frame_num=4, sampling_frame_replace=False)
    np.random.seed(0)
    sizes = set()
    for _ in range(12):
        out = mapper(video)
        frames = out["image"]
        for frame in frames[1:]:
            assert torch.equal(frame, frames[0])
        sizes.add(tuple(frames[0].shape[1:]))
    assert len(sizes) > 1  # the resize really is random across clips


def test_flip_applies_to_every_frame_and_annotation(tmp_path):
    frames = [np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3) for _ in range(2)]
    images, transforms = apply_clip_augmentations([T.RandomFlip(1.0)], frames)
    for image in images:
        np.testing.assert_array_equal(image, frames[0][:, ::-1])
    annos = [[_anno(1, 0, 0, 0, 10)], [_anno(1, 0, 0, 0, 10, as_rle=True)]]
    out = transform_clip_annotations(annos, transforms, (H, W), (H, W))
    np.testing.assert_allclose(out[0][0]["bbox"], [W - 10, 0, W, 10])
    flipped = np.zeros((H, W), dtype=np.uint8)
    flipped[:10, W - 10 :] = 1
    np.testing.assert_array_equal(out[1][0]["segmentation"], flipped)
    with pytest.raises(ValueError, match="frame 1 has size"):
        apply_clip_augmentations([T.RandomFlip(1.0)], [frames[0], frames[0][:10]])


# ---------------------------------------------------------------- training mapper
def test_train_output_contract_and_id_alignment(tmp_path):
    video = make_video(tmp_path, length=4)
    mapper = make_mapper(
        sampling_frame_num=4, sampling_frame_range=10, sampling_frame_replace=False
    )
    np.random.seed(0)
    out = mapper(video)
    assert out["frame_idx"] == [0, 1, 2, 3]
    assert out["file_names"] == video["file_names"]
    assert (out["video_id"], out["height"], out["width"], out["length"]) == (1, H, W, 4)
    assert len(out["image"]) == len(out["instances"]) == 4
    scale = 32 / H
    for t, (image, inst) in enumerate(zip(out["image"], out["instances"])):
        assert image.dtype == torch.uint8 and image.shape == (3, 32, round(W * scale))
        assert inst.image_size == tuple(image.shape[1:])
        assert isinstance(inst.gt_masks, BitMasks)
        assert inst.gt_masks.tensor.shape == (2,) + tuple(image.shape[1:])
        # Rows sorted by track id: row 0 = track 3 (class 0), row 1 = track 7 (class 2).
        assert inst.gt_classes.tolist() == [0, 2]
        present = t in (1, 2)
        assert inst.gt_ids.tolist() == [3 if present else -1, 7]
        assert bool(inst.gt_masks.tensor[0].any()) == present
        assert bool(inst.gt_boxes.tensor[0].abs().sum() > 0) == present
        # Track 7's box follows its square (x0 = 4 + t, size 16) after the resize.
        np.testing.assert_allclose(
            inst.gt_boxes.tensor[1].numpy(),
            np.array([4 + t, 6, 20 + t, 22]) * scale,
            atol=1.5,
        )


def test_track_cropped_away_gets_minus_one(tmp_path):
    # Track 3 in the top-left corner, track 5 in the bottom-right; crop keeps only the top-left.
    annotations = [[_anno(3, 1, 2, 2, 10), _anno(5, 0, 50, 36, 10)] for _ in range(2)]
    video = make_video(tmp_path, length=2, annotations=annotations)
    crop = T.CropTransform(0, 0, 30, 30)
    mapper = make_mapper(augmentations=[crop], sampling_frame_num=2, sampling_frame_replace=False)
    out = mapper(video)
    for inst in out["instances"]:
        assert inst.gt_ids.tolist() == [3, -1]
        assert inst.gt_classes.tolist() == [1, 0]
        assert inst.gt_masks.tensor.shape == (2, 30, 30)
        assert not inst.gt_masks.tensor[1].any()
        assert inst.gt_masks.tensor[0, 2:12, 2:12].all()


def test_uncompressed_rle_and_crowd(tmp_path):
    mask = np.zeros((H, W), dtype=np.uint8, order="F")
    mask[10:20, 10:30] = 1
    # Uncompressed RLE as in YTVIS JSON (column-major run lengths).
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    anno = {
        "id": 4,
        "category_id": 1,
        "bbox": [10, 10, 20, 10],
        "bbox_mode": BoxMode.XYWH_ABS,
        "segmentation": {"size": [H, W], "counts": runs},
    }
    crowd = dict(_anno(9, 0, 0, 0, 5), iscrowd=1)
    video = make_video(tmp_path, length=1, annotations=[[anno, crowd]])
    mapper = make_mapper(augmentations=[], sampling_frame_num=1)
    inst = mapper(video)["instances"][0]
    assert inst.gt_ids.tolist() == [4]
    np.testing.assert_array_equal(inst.gt_masks.tensor[0].numpy(), mask.astype(bool))
    np.testing.assert_allclose(inst.gt_boxes.tensor[0].numpy(), [10, 10, 30, 20])


def test_short_video_repeats_frames(tmp_path):
    video = make_video(tmp_path, length=2)
    mapper = make_mapper(sampling_frame_num=5, sampling_frame_replace=False)
    np.random.seed(3)
    out = mapper(video)
    assert len(out["image"]) == len(out["instances"]) == 5
    assert set(out["frame_idx"]) == {0, 1}


def test_test_mode_all_frames_no_instances(tmp_path):
    video = make_video(tmp_path, length=5)
    mapper = make_mapper(is_train=False, augmentations=[T.ResizeShortestEdge(24, 1000)])
    out = mapper(video)
    assert out["frame_idx"] == list(range(5))
    assert len(out["image"]) == 5 and "instances" not in out
    assert out["image"][0].shape == (3, 24, 32)


def test_test_mapper_from_cfg(tmp_path):
    cfg = _cfg()
    cfg.INPUT.MIN_SIZE_TEST = 24
    mapper = YTVISDatasetMapper(cfg, is_train=False)
    out = mapper(make_video(tmp_path, length=3))
    assert out["image"][0].shape == (3, 24, 32) and len(out["image"]) == 3


def test_unreadable_frame_names_video_and_file(tmp_path):
    video = make_video(tmp_path, length=3, video_id=42)
    os.remove(video["file_names"][1])
    with open(video["file_names"][2], "wb") as f:
        f.write(b"not a jpeg")
    frames = make_mapper(is_train=False)(video)["image"]  # read when the model indexes them
    assert frames[0].shape[0] == 3
    with pytest.raises(FrameReadError, match=r"video 42 frame 1: .*00001\.jpg"):
        frames[1]
    with pytest.raises(FrameReadError, match=r"video 42 frame 2: .*00002\.jpg"):
        frames[2]


def test_test_mapper_reads_frames_lazily_as_the_eager_clip_transform(tmp_path):
    """Each frame is read when indexed, never kept, equal to the clip transform applied to all
    frames at once; the lazy sequence pickles small (a data-loader worker sends it)."""
    import pickle

    from vis_zoo.data.augmentation import apply_clip_augmentations
    from vis_zoo.data.dataset_mapper import read_frame

    video = make_video(tmp_path, length=4, video_id=5)
    augs = [T.ResizeShortestEdge(24, 1000)]
    out = make_mapper(is_train=False, augmentations=augs)(video)
    eager, _ = apply_clip_augmentations(
        augs, [read_frame(f, "BGR", "") for f in video["file_names"]]
    )
    frames = pickle.loads(pickle.dumps(out["image"]))
    assert len(pickle.dumps(out["image"])) < 4000 and len(frames) == 4
    for t in (2, 0, 3, 1):
        assert torch.equal(frames[t], torch.from_numpy(eager[t].transpose(2, 0, 1).copy()))
    assert [f.shape for f in frames[1:3]] == [(3, 24, 32)] * 2
    video["height"] = 50
    with pytest.raises(ValueError, match="video 5 frame 0 .* the dataset dict says"):
        make_mapper(is_train=False)(video)["image"][0]


def test_bad_annotations_length_is_an_error(tmp_path):
    video = make_video(tmp_path, length=3, video_id=8)
    video["annotations"] = video["annotations"][:2]
    with pytest.raises(ValueError, match="video 8: 'annotations' has 2 frames"):
        make_mapper()(video)


# ---------------------------------------------------------------- pseudo-clips
def _image_dict(tmp_path):
    path = _write_frame(str(tmp_path / "img.jpg"), 5, height=60, width=80)
    annos = [
        _anno(100, 3, 5, 5, 30, height=60, width=80),  # large, survives most crops
        _anno(101, 1, 70, 50, 8, height=60, width=80),  # small, in a corner: often cropped away
        dict(_anno(102, 0, 0, 0, 4, height=60, width=80), iscrowd=1),
    ]
    for a in annos:
        del a["id"]  # image datasets carry no track ids
    return {"file_name": path, "image_id": 17, "height": 60, "width": 80, "annotations": annos}


def test_coco_clip_mapper_shapes_and_ids(tmp_path):
    mapper = CocoClipDatasetMapper(
        is_train=True,
        sampling_frame_num=3,
        crop_size_range=(0.5, 0.9),
        min_sizes=(32, 40),
        max_size=100,
        random_flip=True,
    )
    np.random.seed(0)
    saw_cropped_away = False
    for _ in range(20):
        out = mapper(_image_dict(tmp_path))
        assert out["video_id"] == 17 and out["length"] == 3 and out["frame_idx"] == [0, 1, 2]
        shapes = {tuple(img.shape) for img in out["image"]}
        assert len(shapes) == 1  # one common size
        ((_, h, w),) = shapes
        assert min(h, w) in (32, 40)
        for inst in out["instances"]:
            assert inst.image_size == (h, w)
            assert inst.gt_masks.tensor.shape == (2, h, w)  # crowd region is not a track
            assert inst.gt_classes.tolist() == [3, 1]
            ids = inst.gt_ids.tolist()
            assert ids[0] in (0, -1) and ids[1] in (1, -1)
            for row, tid in enumerate(ids):
                assert bool(inst.gt_masks.tensor[row].any()) == (tid != -1)
            saw_cropped_away |= ids[1] == -1
    assert saw_cropped_away


def test_coco_clip_mapper_frames_differ_and_flip_is_per_clip(tmp_path):
    mapper = CocoClipDatasetMapper(
        is_train=True,
        sampling_frame_num=4,
        crop_size_range=(0.5, 0.8),
        min_sizes=(40,),
        max_size=100,
        random_flip=True,
    )
    np.random.seed(1)
    transforms = mapper._frame_transforms(60, 80)
    assert len({str(t.transforms[0].__dict__) for t in transforms}) > 1  # independent crops
    flips = []
    for _ in range(20):
        per_frame = mapper._frame_transforms(60, 80)
        has_flip = [any(isinstance(x, T.HFlipTransform) for x in t.transforms) for t in per_frame]
        assert len(set(has_flip)) == 1
        flips.append(has_flip[0])
    assert 0 < sum(flips) < 20


def test_coco_clip_mapper_from_cfg(tmp_path):
    cfg = _cfg()
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    cfg.INPUT.PSEUDO.MIN_SIZE_TRAIN = (36,)
    cfg.INPUT.PSEUDO.MAX_SIZE_TRAIN = 80
    np.random.seed(2)
    out = CocoClipDatasetMapper(cfg, is_train=True)(_image_dict(tmp_path))
    assert len(out["image"]) == 2 and min(out["image"][0].shape[1:]) == 36
    cfg.INPUT.MIN_SIZE_TEST = 30
    out = CocoClipDatasetMapper(cfg, is_train=False)(_image_dict(tmp_path))
    assert (
        len(out["image"]) == 1 and out["image"][0].shape == (3, 30, 40) and "instances" not in out
    )


def test_maps_a_synthetic_video(synthetic_root):
    from detectron2.data import DatasetCatalog

    video = DatasetCatalog.get("synthetic_vis_train")[0]
    mapper = make_mapper(
        augmentations=[T.ResizeShortestEdge([64], 200, "choice")], sampling_frame_num=3
    )
    np.random.seed(0)
    out = mapper(video)
    assert len(out["image"]) == len(out["instances"]) == 3
    expected_ids = sorted({a["id"] for i in out["frame_idx"] for a in video["annotations"][i]})
    for t, inst in zip(out["frame_idx"], out["instances"]):
        assert inst.gt_masks.tensor.shape[1:] == out["image"][0].shape[1:]
        present = {a["id"] for a in video["annotations"][t]}
        ids = inst.gt_ids.tolist()
        assert [tid if tid in present else -1 for tid in expected_ids] == ids
