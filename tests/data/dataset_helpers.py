"""Shared by the tests in this folder: a video's dataset dict and throwaway catalog entries."""

import uuid

from detectron2.data import DatasetCatalog, MetadataCatalog


def video_dataset_dict(video_id, files, annotations, height, width) -> dict:
    """A YTVIS-style dataset dict of one video: its T frame files and T per-frame annotation
    lists, frames of height x width."""
    return {
        "video_id": video_id,
        "file_names": files,
        "height": height,
        "width": width,
        "length": len(files),
        "annotations": annotations,
    }


def registering(prefix, register_dataset):
    """A fixture body: yields `register(*args, **kwargs)`, which calls
    `register_dataset(name, *args, **kwargs)` with a fresh name "<prefix>_<hex>" and returns that
    name; afterwards every dataset so registered leaves both detectron2 catalogs."""
    names = []

    def register(*args, **kwargs):
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        register_dataset(name, *args, **kwargs)
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
