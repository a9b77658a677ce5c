"""Training/test loaders: mapper choice by metadata, dataset mixing by ratio, rank sharding."""

import itertools

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils import comm
from tests.data.dataset_helpers import registering, video_dataset_dict
from PIL import Image

from vis_zoo.config.defaults import add_vis_config
from vis_zoo.data.build import (
    WeightedTrainingSampler,
    build_mixed_train_loader,
    build_vis_test_loader,
    build_vis_train_loader,
    get_dataset_kind,
)

H, W = 48, 64


def _write_frame(path, seed):
    image = (np.random.RandomState(seed).rand(H, W, 3) * 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def _square(track_id, category_id, x0, y0, size):
    polygon = [x0, y0, x0 + size, y0, x0 + size, y0 + size, x0, y0 + size]
    anno = {
        "category_id": category_id,
        "bbox": [x0, y0, size, size],
        "bbox_mode": BoxMode.XYWH_ABS,
        "segmentation": [polygon],
        "iscrowd": 0,
    }
    if track_id is not None:
        anno["id"] = track_id
    return anno


def make_video(tmp_path, length, video_id=1):
    """`length` frames of H x W; track 5 (class 1) in every frame."""
    folder = tmp_path / f"video{video_id}"
    folder.mkdir(exist_ok=True)
    files = [_write_frame(str(folder / f"{i:05d}.jpg"), i) for i in range(length)]
    annotations = [[_square(5, 1, 10 + i, 8, 20)] for i in range(length)]
    return video_dataset_dict(video_id, files, annotations, H, W)


def _image_dict(tmp_path):
    """An image dataset dict (image_id 17) with two instances."""
    path = _write_frame(str(tmp_path / "image.jpg"), 99)
    return {
        "file_name": path,
        "image_id": 17,
        "height": H,
        "width": W,
        "annotations": [_square(None, 3, 4, 4, 30), _square(None, 0, 40, 30, 10)],
    }


@pytest.fixture
def registered():
    """Register throwaway datasets under unique names; unregister them afterwards."""

    def register_dicts(name, dicts, **metadata):
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(**metadata)

    yield from registering("test_build", register_dicts)


def _cfg(train, ratio=()):
    cfg = get_cfg()
    add_vis_config(cfg)
    cfg.DATASETS.TRAIN = tuple(train)
    cfg.DATASETS.DATASET_RATIO = list(ratio)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    cfg.INPUT.MAX_SIZE_TRAIN = 100
    cfg.INPUT.MIN_SIZE_TEST = 24
    cfg.INPUT.MAX_SIZE_TEST = 100
    cfg.INPUT.PSEUDO.MIN_SIZE_TRAIN = (40,)
    cfg.INPUT.PSEUDO.MAX_SIZE_TRAIN = 100
    cfg.SEED = 0
    return cfg


def _tagging_mapper(tag):
    return lambda d: {"source": tag, "index": d["index"]}


def test_mixing_follows_ratio():
    first = [{"index": i} for i in range(2)]
    second = [{"index": i} for i in range(5)]
    loader = build_mixed_train_loader(
        [first, second],
        [_tagging_mapper(0), _tagging_mapper(1)],
        total_batch_size=4,
        dataset_ratio=[3, 1],
        seed=0,
    )
    items = [item for batch in itertools.islice(loader, 500) for item in batch]
    sources = np.array([item["source"] for item in items])
    assert len(items) == 2000
    assert abs((sources == 0).mean() - 0.75) < 0.03
    # Uniform inside a dataset: each of the second dataset's 5 items ~ 1/5 of its draws.
    second_counts = np.bincount([it["index"] for it in items if it["source"] == 1], minlength=5)
    assert second_counts.min() > 0.1 * second_counts.sum()


def test_default_is_uniform_over_items():
    loader = build_mixed_train_loader(
        [[{"index": 0}], [{"index": i} for i in range(3)]],
        [_tagging_mapper(0), _tagging_mapper(1)],
        total_batch_size=4,
        seed=0,
    )
    items = [item for batch in itertools.islice(loader, 100) for item in batch]
    # 1 of 4 items comes from the first dataset: exactly 25% (TrainingSampler permutes epochs).
    assert np.mean([item["source"] == 0 for item in items]) == pytest.approx(0.25)


def test_ratio_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="DATASET_RATIO has 3 entries but DATASETS.TRAIN has 2"):
        build_mixed_train_loader(
            [[{"index": 0}], [{"index": 0}]],
            [_tagging_mapper(0)] * 2,
            total_batch_size=2,
            dataset_ratio=[1, 2, 3],
            names=["a", "b"],
            seed=0,
        )


def test_weighted_sampler_shards_by_rank(monkeypatch):
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    full = list(itertools.islice(iter(WeightedTrainingSampler(weights, seed=5)), 40))
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        shards.append(list(itertools.islice(iter(WeightedTrainingSampler(weights, seed=5)), 20)))
    assert shards[0] == full[0::2] and shards[1] == full[1::2]


def test_dataset_kind_from_metadata(registered):
    assert get_dataset_kind(registered([], dataset_kind="image")) == "image"
    assert get_dataset_kind(registered([], evaluator_type="coco")) == "image"
    assert get_dataset_kind(registered([], evaluator_type="ytvis", dataset_kind="video")) == "video"
    assert get_dataset_kind(registered([]), [{"file_names": []}]) == "video"
    with pytest.raises(ValueError, match="dataset_kind"):
        get_dataset_kind(registered([], dataset_kind="clip"))


def test_train_loader_mixes_video_and_image_datasets(tmp_path, registered):
    videos = [make_video(tmp_path, length=3, video_id=v) for v in (1, 2)]
    video_name = registered(
        videos, dataset_kind="video", evaluator_type="ytvis", thing_classes=["a", "b", "c"]
    )
    image_name = registered(
        [_image_dict(tmp_path)], evaluator_type="coco", thing_classes=["a", "b", "c", "d"]
    )
    cfg = _cfg([video_name, image_name], ratio=[1, 1])
    loader = build_vis_train_loader(cfg)
    seen = set()
    for batch in itertools.islice(loader, 6):
        assert isinstance(batch, list) and len(batch) == 2
        for clip in batch:
            assert len(clip["image"]) == len(clip["instances"]) == 2
            for image, inst in zip(clip["image"], clip["instances"]):
                assert inst.image_size == tuple(image.shape[1:])
            if clip["video_id"] == 17:  # the image: pseudo-clip with PSEUDO sizes
                assert min(clip["image"][0].shape[1:]) == 40
            else:
                assert min(clip["image"][0].shape[1:]) == 32
            seen.add(clip["video_id"])
    assert 17 in seen and seen & {1, 2}


def test_train_loader_with_workers(tmp_path, registered):
    name = registered([make_video(tmp_path, length=3)], dataset_kind="video")
    cfg = _cfg([name])
    cfg.DATALOADER.NUM_WORKERS = 1
    batch = next(iter(build_vis_train_loader(cfg)))
    assert len(batch) == 2 and batch[0]["instances"][0].gt_ids.dtype == torch.int64


def test_test_loader_yields_whole_videos(tmp_path, registered):
    videos = [make_video(tmp_path, length=n, video_id=n) for n in (2, 4)]
    name = registered(videos, dataset_kind="video")
    batches = list(build_vis_test_loader(_cfg([name]), name))
    assert [len(b) for b in batches] == [1, 1]
    assert [b[0]["video_id"] for b in batches] == [2, 4]
    assert [len(b[0]["image"]) for b in batches] == [2, 4]
    assert all("instances" not in b[0] for b in batches)
    assert batches[0][0]["image"][0].shape == (3, 24, 32)
