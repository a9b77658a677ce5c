"""Small builders for hand-made YouTube-VIS GT JSONs and results lists (tests only)."""

from typing import List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from vis_zoo.evaluation import rle_to_json


def box(y0: int, x0: int, y1: int, x1: int, height: int = 64, width: int = 64) -> np.ndarray:
    """uint8 [H, W] mask, 1 on rows y0:y1 and columns x0:x1."""
    m = np.zeros((height, width), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def rle(mask: Optional[np.ndarray]) -> Optional[dict]:
    if mask is None:
        return None
    return rle_to_json(mask_util.encode(np.asfortranarray(mask.astype(np.uint8))))


def video(vid: int, length: int, height: int = 64, width: int = 64) -> dict:
    return {
        "id": vid,
        "height": height,
        "width": width,
        "length": length,
        "file_names": [f"v{vid}/{t:05d}.jpg" for t in range(length)],
    }


def gt_track(
    ann_id: int,
    vid: int,
    category: int,
    masks: Sequence[Optional[np.ndarray]],
    iscrowd: int = 0,
    areas: Optional[List] = None,
    occlusion: Optional[List] = None,
) -> dict:
    """A GT annotation; `areas` defaults to the mask areas (None where absent)."""
    if areas is None:
        areas = [None if m is None else int(m.sum()) for m in masks]
    ann = {
        "id": ann_id,
        "video_id": vid,
        "category_id": category,
        "iscrowd": iscrowd,
        "segmentations": [rle(m) for m in masks],
        "areas": areas,
        "bboxes": [None] * len(masks),
        "length": len(masks),
    }
    if occlusion is not None:
        ann["occlusion"] = occlusion
    return ann


def pred(vid: int, category: int, score: float, masks: Sequence[Optional[np.ndarray]]) -> dict:
    return {
        "video_id": vid,
        "category_id": category,
        "score": score,
        "segmentations": [rle(m) for m in masks],
    }


def gt_json(
    videos: List[dict], annotations: Optional[List[dict]], categories=((1, "cat"), (3, "dog"))
) -> dict:
    return {
        "videos": videos,
        "categories": [{"id": c, "name": n, "supercategory": "animal"} for c, n in categories],
        "annotations": annotations,
    }


def two_video_gt():
    """Video 10 (3 frames): two 'cat' tracks; video 11 (2 frames): one 'dog' track.
    Returns (gt_json, {ann_id: masks})."""
    a = [box(2, 2, 12, 12)] * 3
    b = [box(30, 30, 45, 50), box(31, 30, 46, 50), None]
    c = [box(5, 40, 25, 60), box(6, 41, 26, 61)]
    anns = [gt_track(1, 10, 1, a), gt_track(2, 10, 1, b), gt_track(3, 11, 3, c)]
    return gt_json([video(10, 3), video(11, 2)], anns), {1: a, 2: b, 3: c}
