"""A tiny YouTube-VIS-format dataset of its own classes (not the synthetic shapes), written by tests
that use a dataset the way a user brings one: a JSON and a frame folder."""

import json
import os
from typing import Dict, List, Sequence

import cv2
import numpy as np

# Six classes with ids that are not 1..K, so that the contiguous mapping is exercised too.
CUSTOM_CATEGORIES = [
    {"id": 11, "name": "kettle"},
    {"id": 12, "name": "lamp"},
    {"id": 14, "name": "teapot"},
    {"id": 15, "name": "vase"},
    {"id": 17, "name": "clock"},
    {"id": 19, "name": "mug"},
]


def _box_polygon(x: float, y: float, w: float, h: float) -> List[List[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def write_custom_ytvis(
    root: str,
    *,
    num_videos: int = 2,
    length: int = 3,
    height: int = 48,
    width: int = 64,
    categories: Sequence[Dict] = CUSTOM_CATEGORIES,
    json_name: str = "train.json",
) -> Dict[str, str]:
    """Write `num_videos` videos of coloured moving boxes under root/frames and root/<json_name>.

    Returns {"json": path, "frames": folder}. Every video holds two tracks of two of the categories.
    """
    frames_dir = os.path.join(root, "frames")
    videos, annotations = [], []
    rng = np.random.default_rng(0)
    for v in range(num_videos):
        names = [f"video{v}/{t:05d}.jpg" for t in range(length)]
        os.makedirs(os.path.join(frames_dir, f"video{v}"), exist_ok=True)
        tracks = []
        for k in range(2):
            category = categories[(2 * v + k) % len(categories)]
            boxes = [(4 + 20 * k + 3 * t, 6 + 4 * k + 2 * t, 16, 14) for t in range(length)]
            tracks.append((category, boxes, (60 + 90 * k, 200 - 60 * k, 40 + 40 * v)))
        for t, name in enumerate(names):
            image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
            for _, boxes, color in tracks:
                x, y, w, h = boxes[t]
                image[y : y + h, x : x + w] = color
            cv2.imwrite(os.path.join(frames_dir, name), image)
        video_id = v + 1
        videos.append(
            {
                "id": video_id,
                "width": width,
                "height": height,
                "length": length,
                "file_names": names,
            }
        )
        for category, boxes, _ in tracks:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": video_id,
                    "category_id": category["id"],
                    "iscrowd": 0,
                    "height": height,
                    "width": width,
                    "segmentations": [_box_polygon(*b) for b in boxes],
                    "bboxes": [list(b) for b in boxes],
                    "areas": [b[2] * b[3] for b in boxes],
                }
            )
    json_file = os.path.join(root, json_name)
    with open(json_file, "w") as f:
        json.dump({"videos": videos, "annotations": annotations, "categories": list(categories)}, f)
    return {"json": json_file, "frames": frames_dir}
