"""Training and test data loaders for videos, with image datasets as pseudo-videos and dataset
mixing.

Training: each dataset of DATASETS.TRAIN is mapped by the mapper its metadata asks for (video ->
`YTVISDatasetMapper`, image -> `CocoClipDatasetMapper`); the datasets are concatenated and sampled
with probability proportional to DATASETS.DATASET_RATIO (uniform inside a dataset). Sampling is an
infinite, seeded stream sharded by rank (detectron2 sampler convention) and by DataLoader worker
(detectron2's ToIterableDataset), so every process and worker sees different clips.
"""

import logging
import os
import signal
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.utils.data as torchdata
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.build import (
    build_batch_data_loader,
    build_detection_test_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.data.samplers import InferenceSampler, TrainingSampler

from .dataset_mapper import CocoClipDatasetMapper, YTVISDatasetMapper

__all__ = [
    "WeightedTrainingSampler",
    "get_dataset_kind",
    "build_mixed_train_loader",
    "build_vis_train_loader",
    "build_vis_test_loader",
]

logger = logging.getLogger(__name__)

# Evaluator types of image datasets that carry no `dataset_kind` (detectron2's builtin coco_*,
# lvis_*).
_IMAGE_EVALUATOR_TYPES = ("coco", "lvis")


def get_dataset_kind(dataset_name: str, dataset_dicts: Optional[Sequence[Dict]] = None) -> str:
    """ "video" or "image", from the dataset's metadata (`dataset_kind`, else `evaluator_type`).

    Datasets with neither key are classified by their first dict (`file_names` -> video).
    """
    meta = MetadataCatalog.get(dataset_name)
    kind = meta.get("dataset_kind", None)
    if kind is not None:
        if kind not in ("video", "image"):
            raise ValueError(
                f"dataset '{dataset_name}': metadata dataset_kind must be 'video' or 'image', "
                f"got {kind!r}"
            )
        return kind
    if meta.get("evaluator_type", None) in _IMAGE_EVALUATOR_TYPES:
        return "image"
    if dataset_dicts:
        return "video" if "file_names" in dataset_dicts[0] else "image"
    return "video"


class WeightedTrainingSampler(TrainingSampler):
    """An infinite stream of indices drawn i.i.d. with probability proportional to `weights`.

    Like detectron2's TrainingSampler, the stream is seeded identically in every process and
    rank r keeps items r, r + world_size, ... so the processes together follow one stream.
    """

    def __init__(self, weights: torch.Tensor, seed: Optional[int] = None, chunk_size: int = 4096):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.ndim != 1 or len(weights) == 0:
            raise ValueError("WeightedTrainingSampler: weights must be a non-empty 1-D tensor")
        if (weights < 0).any() or not torch.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError("WeightedTrainingSampler: weights must be finite, >= 0, not all zero")
        super().__init__(len(weights), shuffle=True, seed=seed)
        self._weights = weights
        self._chunk_size = chunk_size

    def _infinite_indices(self):
        generator = torch.Generator()
        generator.manual_seed(self._seed)
        while True:
            yield from torch.multinomial(
                self._weights, self._chunk_size, replacement=True, generator=generator
            ).tolist()


def _mixing_weights(
    sizes: Sequence[int], ratios: Sequence[float], names: Sequence[str]
) -> torch.Tensor:
    """Per-item weights: dataset d has total mass ratio_d, spread uniformly over its items."""
    if len(ratios) != len(sizes):
        raise ValueError(
            f"DATASETS.DATASET_RATIO has {len(ratios)} entries but DATASETS.TRAIN has "
            f"{len(sizes)} ({list(names)}); give one ratio per training dataset"
        )
    if any(r <= 0 for r in ratios):
        raise ValueError(f"DATASETS.DATASET_RATIO must be positive, got {list(ratios)}")
    return torch.cat(
        [
            torch.full((size,), float(ratio) / size, dtype=torch.float64)
            for size, ratio in zip(sizes, ratios)
        ]
    )


class WorkerMapper:
    """A mapper that, in a DataLoader worker process, first sets Ctrl-C (SIGINT) to be ignored.

    The terminal sends Ctrl-C to every process of the run; the main process stops training and
    shuts its workers down, and without this each worker would also print a KeyboardInterrupt
    traceback of its own."""

    def __init__(self, mapper: Callable[[Dict], Dict]):
        self.mapper = mapper
        self._quiet_pid = None

    def __call__(self, dataset_dict: Dict) -> Dict:
        if self._quiet_pid != os.getpid():
            if torchdata.get_worker_info() is not None:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            self._quiet_pid = os.getpid()
        return self.mapper(dataset_dict)


def build_mixed_train_loader(
    dataset_dicts: Sequence[Sequence[Dict]],
    mappers: Sequence[Callable[[Dict], Dict]],
    *,
    total_batch_size: int,
    dataset_ratio: Sequence[float] = (),
    names: Optional[Sequence[str]] = None,
    num_workers: int = 0,
    aspect_ratio_grouping: bool = False,
    seed: Optional[int] = None,
) -> torchdata.DataLoader:
    """A training loader over several datasets, each with its own mapper.

    Args:
        dataset_dicts: per dataset, its list of dataset dicts (each non-empty).
        mappers: per dataset, the mapper applied to its dicts.
        total_batch_size: clips per iteration summed over all processes.
        dataset_ratio: per dataset, its sampling weight; empty = uniform over all items.
        seed: sampler seed (None: a seed shared by all processes).

    Returns:
        an infinite iterable of batches, each a list of total_batch_size / world_size mapped dicts.
    """
    names = list(names) if names is not None else [f"dataset{i}" for i in range(len(dataset_dicts))]
    if len(mappers) != len(dataset_dicts):
        raise ValueError(f"{len(dataset_dicts)} datasets but {len(mappers)} mappers")
    for name, dicts in zip(names, dataset_dicts):
        if len(dicts) == 0:
            raise ValueError(f"training dataset '{name}' is empty")
    # One MapDataset per source, so a dict always meets its own mapper.
    parts = [
        MapDataset(DatasetFromList(list(dicts), copy=False), WorkerMapper(mapper))
        for dicts, mapper in zip(dataset_dicts, mappers)
    ]
    dataset = torchdata.ConcatDataset(parts)
    sizes = [len(d) for d in dataset_dicts]
    if dataset_ratio:
        sampler = WeightedTrainingSampler(_mixing_weights(sizes, dataset_ratio, names), seed=seed)
    else:
        sampler = TrainingSampler(len(dataset), shuffle=True, seed=seed)
    return build_batch_data_loader(
        dataset,
        sampler,
        total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
    )


def _load_train_dicts(cfg, dataset_name: str) -> List[Dict]:
    dicts = DatasetCatalog.get(dataset_name)
    if get_dataset_kind(dataset_name, dicts) == "image":
        # detectron2's loader: drops crowd-only / empty images when asked, logs statistics.
        return get_detection_dataset_dicts(
            [dataset_name], filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
    if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
        kept = [d for d in dicts if any(len(frame) > 0 for frame in d.get("annotations", []))]
        if len(kept) < len(dicts):
            logger.info(
                f"Removed {len(dicts) - len(kept)} videos with no annotations from '{dataset_name}'"
            )
        dicts = kept
    return dicts


def build_vis_train_loader(cfg, mapper: Optional[Callable[[Dict], Dict]] = None):
    """The training loader for cfg.DATASETS.TRAIN (see module docstring).

    Args:
        mapper: if given, used for every dataset instead of the metadata-chosen mapper.

    Returns:
        an infinite iterable of batches (lists of mapped clip dicts), SOLVER.IMS_PER_BATCH clips
        per iteration over all processes.
    """
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("DATASETS.TRAIN is empty")
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN!r} is not supported by the "
            "VIS loader; use 'TrainingSampler' and DATASETS.DATASET_RATIO for mixing"
        )
    dataset_dicts, mappers = [], []
    for name in names:
        dicts = _load_train_dicts(cfg, name)
        dataset_dicts.append(dicts)
        if mapper is not None:
            mappers.append(mapper)
        elif get_dataset_kind(name, dicts) == "image":
            mappers.append(CocoClipDatasetMapper(cfg, is_train=True))
        else:
            mappers.append(YTVISDatasetMapper(cfg, is_train=True))
        logger.info(
            f"Training dataset '{name}': {len(dicts)} items, mapper {type(mappers[-1]).__name__}"
        )
    return build_mixed_train_loader(
        dataset_dicts,
        mappers,
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        dataset_ratio=list(cfg.DATASETS.DATASET_RATIO),
        names=names,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        seed=cfg.SEED if cfg.SEED >= 0 else None,
    )


def build_vis_test_loader(cfg, dataset_name: str, mapper: Optional[Callable[[Dict], Dict]] = None):
    """A test loader over one dataset: every frame of each video, batch size 1, each process
    gets its share of the videos (InferenceSampler).
    """
    dicts = DatasetCatalog.get(dataset_name)
    if mapper is None:
        if get_dataset_kind(dataset_name, dicts) == "image":
            mapper = CocoClipDatasetMapper(cfg, is_train=False)
        else:
            mapper = YTVISDatasetMapper(cfg, is_train=False)
    return build_detection_test_loader(
        dicts,
        mapper=WorkerMapper(mapper),
        sampler=InferenceSampler(len(dicts)),
        batch_size=1,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
