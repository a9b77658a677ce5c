"""Random YouTube-VIS-style GT JSON + results lists, for cross-checking and benchmarking the metric.

Deterministic for a given seed. The GT mixes every segmentation format the scorer accepts (polygons,
uncompressed and compressed RLE, null), crowd tracks, absent frames, optional OVIS occlusion labels,
and GT `areas` that land in each size range; the predictions mix noisy copies of GT tracks (right or
wrong category), background tracks, empty tracks and tied scores.
"""

from typing import List, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_util

from vis_zoo.evaluation.results import rle_to_json

__all__ = ["make_random_ytvis"]

_OCCLUSION_LABELS = ("no_occlusion", "slight_occlusion", "severe_occlusion")


def _box_mask(h: int, w: int, x0: int, y0: int, bw: int, bh: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    x0, y0 = max(0, x0), max(0, y0)
    m[y0 : min(h, y0 + bh), x0 : min(w, x0 + bw)] = 1
    return m


def _encode(mask: np.ndarray) -> dict:
    return rle_to_json(mask_util.encode(np.asfortranarray(mask)))


def _encode_many(masks: List[Optional[np.ndarray]]) -> List[Optional[dict]]:
    """Encode a track's frames in one pycocotools call; None stays None."""
    present = [i for i, m in enumerate(masks) if m is not None]
    out: List[Optional[dict]] = [None] * len(masks)
    if present:
        stack = np.asfortranarray(np.stack([masks[i] for i in present], axis=2))
        for i, r in zip(present, mask_util.encode(stack)):
            out[i] = rle_to_json(r)
    return out


def _uncompressed(mask: np.ndarray) -> dict:
    """Column-major run lengths starting with a run of zeros (the COCO uncompressed RLE)."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def _track_boxes(rng, h, w, length, scale) -> List[Tuple[int, int, int, int]]:
    bw = max(2, int(rng.integers(max(2, w // 8), max(3, int(w * scale)))))
    bh = max(2, int(rng.integers(max(2, h // 8), max(3, int(h * scale)))))
    x, y = int(rng.integers(0, max(1, w - bw))), int(rng.integers(0, max(1, h - bh)))
    vx, vy = int(rng.integers(-3, 4)), int(rng.integers(-3, 4))
    return [(x + vx * t, y + vy * t, bw, bh) for t in range(length)]


def make_random_ytvis(
    seed: int = 0,
    num_videos: int = 6,
    num_categories: int = 4,
    num_frames: Tuple[int, int] = (2, 5),
    frame_size: Tuple[int, int] = (64, 64),
    max_gt_per_video: int = 4,
    preds_per_video: int = 12,
    occlusion: bool = False,
    crowd_prob: float = 0.1,
    large_video_every: Optional[int] = 5,
    formats: bool = True,
):
    """Returns (gt_json dict, results list).

    num_frames: inclusive range of video lengths; frame_size: (H, W) of ordinary videos; every
    `large_video_every`-th video is 320x320 so that mask areas reach the medium/large size ranges.
    formats: mix polygon / uncompressed-RLE GT segmentations in (slower to build; off for
    benchmarks).
    """
    rng = np.random.default_rng(seed)
    categories = [
        {"id": 2 * k + 1, "name": f"class{k}", "supercategory": "thing"}
        for k in range(num_categories)
    ]
    cat_ids = [c["id"] for c in categories]
    videos, annotations, results = [], [], []
    ann_id = 1
    for v in range(num_videos):
        vid = 10 + 3 * v  # ids neither contiguous nor 0-based
        large = large_video_every is not None and v % large_video_every == large_video_every - 1
        h, w = (320, 320) if large else frame_size
        length = int(rng.integers(num_frames[0], num_frames[1] + 1))
        videos.append(
            {
                "id": vid,
                "height": h,
                "width": w,
                "length": length,
                "file_names": [f"{vid}/{t:05d}.jpg" for t in range(length)],
            }
        )
        gt_tracks = []
        for _ in range(int(rng.integers(1, max_gt_per_video + 1))):
            boxes = _track_boxes(rng, h, w, length, scale=0.9 if large else 0.6)
            present = rng.random(length) > 0.2
            present[int(rng.integers(0, length))] = True
            masks = [_box_mask(h, w, *b) if p else None for b, p in zip(boxes, present)]
            segs, areas = [], []
            for m in masks:
                if m is None or not m.any():
                    segs.append(None)
                    areas.append(None)
                    continue
                area = int(m.sum())
                kind = rng.integers(0, 3) if formats else 2
                if kind == 0:  # polygon of the box (pycocotools rasterises it to the same pixels)
                    ys, xs = np.nonzero(m)
                    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
                    segs.append(
                        [
                            [
                                float(x0),
                                float(y0),
                                float(x1),
                                float(y0),
                                float(x1),
                                float(y1),
                                float(x0),
                                float(y1),
                            ]
                        ]
                    )
                elif kind == 1:
                    segs.append(_uncompressed(m))
                else:
                    segs.append(_encode(m))
                # GT `areas` are what decide the size range: scale some up so that small masks
                # also exercise the medium / large ranges (the scorer never recomputes them).
                areas.append(area * int(rng.choice([1, 1, 1, 100, 1000])))
            ann = {
                "id": ann_id,
                "video_id": vid,
                "category_id": int(rng.choice(cat_ids)),
                "iscrowd": int(rng.random() < crowd_prob),
                "segmentations": segs,
                "areas": areas,
                "bboxes": [None] * length,
                "height": h,
                "width": w,
                "length": length,
            }
            if occlusion:
                ann["occlusion"] = [
                    None if s is None else str(rng.choice(_OCCLUSION_LABELS, p=[0.5, 0.3, 0.2]))
                    for s in segs
                ]
            annotations.append(ann)
            gt_tracks.append((ann, masks))
            ann_id += 1
        for _ in range(preds_per_video):
            kind = rng.random()
            if kind < 0.6 and gt_tracks:  # a noisy copy of a GT track
                ann, masks = gt_tracks[int(rng.integers(0, len(gt_tracks)))]
                category = ann["category_id"] if rng.random() < 0.7 else int(rng.choice(cat_ids))
                frames = []
                for m in masks:
                    if m is None or rng.random() < 0.1:
                        frames.append(None if rng.random() < 0.7 else np.zeros((h, w), np.uint8))
                        continue
                    dy, dx = rng.integers(-2, 3, size=2)
                    frames.append(np.roll(np.roll(m, int(dy), axis=0), int(dx), axis=1))
            elif kind < 0.95:  # a background track
                category = int(rng.choice(cat_ids))
                boxes = _track_boxes(rng, h, w, length, scale=0.5)
                frames = [_box_mask(h, w, *b) if rng.random() > 0.1 else None for b in boxes]
            else:  # empty track
                category = int(rng.choice(cat_ids))
                frames = [None] * length
            segs = _encode_many(frames)
            if rng.random() < 0.02:
                category = 999  # not a GT category: dropped by the scorer
            # Quantised scores create ties, which exercise the stable sorts.
            results.append(
                {
                    "video_id": vid,
                    "category_id": category,
                    "score": float(np.round(rng.random(), 1)),
                    "segmentations": segs,
                }
            )
    gt_json = {"videos": videos, "categories": categories, "annotations": annotations}
    return gt_json, results
