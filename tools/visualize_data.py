#!/usr/bin/env python
"""Draw sampled training clips exactly as the model sees them (after sampling and augmentation).

One image per clip, its frames side by side; every object's mask is coloured by its track id (the
same colour in every frame) and labelled "<track id>:<class name>". Tracks absent in a frame
(gt_id = -1) are not drawn there.

    python tools/visualize_data.py --config-file configs/.../x.yaml --output vis_out --num-clips 8 \
        [--train-data JSON FRAMES] [KEY VALUE ...]
"""

import argparse
import colorsys
import itertools
import logging
import os
import sys
from typing import List, Optional, Sequence

import cv2
import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb

from vis_zoo.data import build_vis_train_loader
from vis_zoo.engine.cli import add_config_arguments, config_errors_as_exit, config_overrides
from vis_zoo.engine.setup import build_config
from vis_zoo.utils.io import atomic_open

logger = logging.getLogger("vis_zoo.visualize_data")


def track_color(track_id: int) -> np.ndarray:
    """A bright RGB colour that depends only on the track id (stable across frames and clips)."""
    # Golden-ratio hue steps: consecutive ids (the usual neighbours in a clip) get distant hues.
    hue = (int(track_id) * 0.618033988749895) % 1.0
    return (np.array(colorsys.hsv_to_rgb(hue, 0.85, 1.0)) * 255).astype(np.float32)


def draw_frame(image_rgb: np.ndarray, instances, class_names: Sequence[str]) -> np.ndarray:
    """Overlay one frame's tracks.

    Args:
        image_rgb: HxWx3 uint8 RGB.
        instances: detectron2 Instances with gt_ids [N], gt_classes [N], gt_masks BitMasks [N,H,W].
    Returns:
        HxWx3 uint8 RGB.
    """
    canvas = image_rgb.astype(np.float32)
    masks = instances.gt_masks.tensor.cpu().numpy().astype(bool)
    ids = instances.gt_ids.cpu().tolist()
    classes = instances.gt_classes.cpu().tolist()
    labels = []
    for mask, track_id, class_id in zip(masks, ids, classes):
        if track_id < 0 or not mask.any():
            continue
        color = track_color(track_id)
        canvas[mask] = 0.45 * canvas[mask] + 0.55 * color
        name = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
        ys, xs = np.nonzero(mask)
        labels.append((f"{track_id}:{name}", (int(xs.min()), int(ys.min())), color))
    canvas = canvas.clip(0, 255).astype(np.uint8)
    for mask, track_id in zip(masks, ids):
        if track_id >= 0 and mask.any():
            contours, _ = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(canvas, contours, -1, track_color(track_id).tolist(), 1)
    # Text last so masks never hide it; black outline keeps it readable on any colour.
    for text, (x, y), color in labels:
        origin = (x, max(y - 2, 10))
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(
            canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.35, color.tolist(), 1, cv2.LINE_AA
        )
    return canvas


def draw_clip(clip: dict, image_format: str, class_names: Sequence[str]) -> np.ndarray:
    """A mapped training clip -> one RGB image [H, T*W + gaps, 3] with its frames side by side."""
    frames = []
    for image, instances in zip(clip["image"], clip["instances"]):
        rgb = convert_image_to_rgb(image.permute(1, 2, 0).cpu().numpy(), image_format)
        frames.append(draw_frame(np.ascontiguousarray(rgb, dtype=np.uint8), instances, class_names))
    height = max(f.shape[0] for f in frames)
    gap = np.full((height, 4, 3), 255, dtype=np.uint8)
    padded = [np.pad(f, ((0, height - f.shape[0]), (0, 0), (0, 0))) for f in frames]
    pieces = [padded[0]]
    for frame in padded[1:]:
        pieces += [gap, frame]
    return np.concatenate(pieces, axis=1)


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the images")
    parser.add_argument("--num-clips", type=int, default=10)
    add_config_arguments(parser)  # --config-file, --train-data/--test-data, KEY VALUE overrides
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> List[str]:
    """Write `--num-clips` clip images to `--output`; returns their paths."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    # the same config as tools/train_net.py builds: validated, DATASETS.SYNTHETIC_ROOT applied
    with config_errors_as_exit():
        cfg = build_config(args.config_file, config_overrides(args))
    cfg.DATALOADER.NUM_WORKERS = min(cfg.DATALOADER.NUM_WORKERS, 2)
    cfg.freeze()

    # Mixed datasets share one label space in practice; names come from the first one.
    class_names = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes", [])
    os.makedirs(args.output, exist_ok=True)
    written = []
    clips = (clip for batch in build_vis_train_loader(cfg) for clip in batch)
    for index, clip in enumerate(itertools.islice(clips, args.num_clips)):
        canvas = draw_clip(clip, cfg.INPUT.FORMAT, class_names)
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"could not encode the image of clip {index}")
        path = os.path.join(args.output, f"clip{index:04d}_video{clip['video_id']}.png")
        with atomic_open(path, "wb") as f:
            f.write(encoded.tobytes())
        written.append(path)
        logger.info(f"wrote {path} (frames {clip['frame_idx']})")
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
