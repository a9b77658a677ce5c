#!/usr/bin/env python
"""Run a VIS Zoo model on your own video and write an annotated video.

    python tools/demo.py --input my_video.mp4 --config-file configs/vita/ytvis19_R50.yaml \
        --output demo_out --weights model_final.pth [--save-frames] [--save-masks] \
        [--results-json] [--confidence-threshold 0.3] [KEY VALUE ...]

Input: a video file (anything OpenCV reads) or a folder of frame images (natural name order).
Output, in --output (a folder):
    <input name>.mp4       every frame with the predicted masks coloured per track id and outlined,
                           each labelled "#<track> <class> <score>" (tracks whose score >=
                           --confidence-threshold); a video whose short side is under
                           --render-min-size (360) is drawn at an integer multiple of its size
    frames/00000.jpg ...   the annotated frames (--save-frames)
    masks/track_XXX_<class>/00000.png ...   one binary PNG per frame for EVERY output track, drawn
                           or not (--save-masks; an empty PNG where the track has no mask)
    demo_summary.json      the input's size and frame count, the predictions, which were drawn and
                           with what label, and per track its class, dataset category id and score
    results.json           every prediction in the YouTube-VIS submission format (--results-json;
                           category ids of the config's DATASETS.TEST[0] metadata when it has them)

Memory does not grow with the video: frames are decoded lazily (never the whole video), masks are
RLE-encoded into a temporary file as each frame is finished (MODEL.VIS.OUTPUT_RLE is forced on) and
read back frame by frame for rendering and for results.json, and every model's long-video path is
bounded (docs/long_videos.md). The annotated video is rendered in a second lazy pass over the input.
"""

import argparse
import colorsys
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch

from vis_zoo.engine.cli import add_config_arguments, config_errors_as_exit, config_overrides
from vis_zoo.engine.threads import configure_cpu_threads

logger = logging.getLogger("vis_zoo.demo")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", required=True, help="video file or folder of frame images")
    parser.add_argument("--output", required=True, help="output folder (created)")
    parser.add_argument("--weights", default=None, help="checkpoint (same as MODEL.WEIGHTS PATH)")
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="draw tracks whose score is at least this (results.json keeps every prediction)",
    )
    parser.add_argument(
        "--max-tracks", type=int, default=20, help="draw at most this many tracks (highest score)"
    )
    parser.add_argument(
        "--save-frames", action="store_true", help="also write the annotated frames as JPEGs"
    )
    parser.add_argument(
        "--save-masks", action="store_true", help="also write one binary PNG per track and frame"
    )
    parser.add_argument(
        "--results-json", action="store_true", help="also write results.json (submission format)"
    )
    parser.add_argument(
        "--max-frames", type=int, default=None, help="only the first N frames of the input"
    )
    parser.add_argument(
        "--fps", type=float, default=None, help="output frame rate (default: the input's)"
    )
    parser.add_argument(
        "--render-min-size",
        type=int,
        default=360,
        help="draw a video whose short side is below this many pixels at an integer "
        "multiple of its size, so that labels stay small against it (0: never)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="run without MODEL.WEIGHTS (a random model: meaningless masks) on purpose",
    )
    # --config-file, --train-data/--test-data (class names), trailing KEY VALUE or --opts overrides
    add_config_arguments(parser)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------- drawing
def track_color(track_id: int) -> np.ndarray:
    """A bright BGR colour that depends only on the track id (the same in every frame)."""
    # Golden-ratio hue steps keep consecutive ids far apart on the colour wheel.
    hue = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return np.array([b, g, r], dtype=np.float32) * 255


FONT = cv2.FONT_HERSHEY_SIMPLEX


def render_zoom(height: int, width: int, min_size: int) -> int:
    """The integer factor a video is drawn at: its short side reaches `min_size` (at most 8x; 1 when
    it is already that large or `min_size` is 0). Text needs some 10 pixels per line, so on a
    96x128 video drawn as it is, five labels would cover half the frame."""
    short = min(height, width)
    if min_size <= 0 or short >= min_size:
        return 1
    return int(min(8, -(-min_size // short)))


def zoom_frame(frame_bgr: np.ndarray, masks: Sequence[Optional[np.ndarray]], zoom: int):
    """A frame (smoothly) and its masks (pixel for pixel) enlarged `zoom` times."""
    if zoom == 1:
        return frame_bgr, masks
    height, width = frame_bgr.shape[:2]
    frame = cv2.resize(frame_bgr, (width * zoom, height * zoom), interpolation=cv2.INTER_LINEAR)
    return frame, [
        None if m is None else np.repeat(np.repeat(m, zoom, axis=0), zoom, axis=1) for m in masks
    ]


def label_style(height: int, width: int) -> Dict[str, float]:
    """Font scale, text thickness and outline width for a frame: proportional to its short side
    (0.5 at 480 px), never so small that it cannot be read (0.3) nor so large that a few labels
    cover the frame (1.6)."""
    short = min(height, width)
    scale = float(np.clip(short / 960.0, 0.3, 1.6))
    return {"scale": scale, "thickness": max(1, round(scale * 2)), "outline": max(1, short // 240)}


def fit_label(text: str, max_width: int, style: Dict[str, float]):
    """(text, (w, h), baseline) of the label, shortened until it fits `max_width` pixels: first the
    class name loses letters (ending in "."), then the text is cut from the end."""

    def size(t):
        return cv2.getTextSize(t, FONT, style["scale"], style["thickness"])

    (w, h), base = size(text)
    parts = text.split(" ")
    while w > max_width and len(parts) == 3 and len(parts[1]) > 2:
        parts[1] = parts[1][:-2] + "."
        text = " ".join(parts)
        (w, h), base = size(text)
    while w > max_width and len(text) > 1:
        text = text[:-1]
        (w, h), base = size(text)
    return text, (w, h), base


def place_label(
    box_w: int,
    box_h: int,
    anchor_x: int,
    anchor_y: int,
    mask_bottom: int,
    height: int,
    width: int,
    taken: List[Sequence[int]],
) -> Sequence[int]:
    """Top-left corner (x, y) of a box_w x box_h label for a mask whose top-left is the anchor:
    just above the mask, else just inside its top, else just below it, each moved down past the
    labels already placed; always inside the frame. `taken` holds the placed boxes (x0, y0, x1, y1).
    When no place is free (a frame crowded with labels) the label overlaps at the mask's top."""
    x = int(np.clip(anchor_x, 0, max(0, width - box_w)))

    def blocking(y):
        return [d for a, b, c, d in taken if x < c and x + box_w > a and y < d and y + box_h > b]

    for start in (anchor_y - box_h, anchor_y, mask_bottom + 1):
        y = int(np.clip(start, 0, max(0, height - box_h)))
        while True:
            below = blocking(y)
            if not below:
                return x, y
            y = max(below)  # just below the lowest label in the way
            if y + box_h > height:
                break
    return x, int(np.clip(anchor_y, 0, max(0, height - box_h)))


def draw_tracks(
    frame_bgr: np.ndarray,
    masks: Sequence[Optional[np.ndarray]],
    track_ids: Sequence[int],
    labels: Sequence[str],
    alpha: float = 0.45,
) -> np.ndarray:
    """Overlay one frame's masks: a translucent fill in the track's colour, an outline (dark, then
    the colour) that stays visible on a background of the same colour, and a label box kept inside
    the frame and clear of the other labels. Text size follows the frame size (`label_style`).

    Args:
        frame_bgr: HxWx3 uint8.
        masks: per track a bool HxW mask, or None when the track has no mask on this frame.
        track_ids: per track, the id that picks its colour.
        labels: per track, the text drawn at the top-left of its mask.
    Returns:
        HxWx3 uint8 BGR.
    """
    height, width = frame_bgr.shape[:2]
    style = label_style(height, width)
    canvas = frame_bgr.astype(np.float32)
    for mask, tid in zip(masks, track_ids):
        if mask is None or not mask.any():
            continue
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * track_color(tid)
    out = canvas.clip(0, 255).astype(np.uint8)
    present = [
        (m, t, text) for m, t, text in zip(masks, track_ids, labels) if m is not None and m.any()
    ]
    for mask, tid, _ in present:
        color = tuple(int(c) for c in track_color(tid))
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, (0, 0, 0), style["outline"] + 2, cv2.LINE_AA)
        cv2.drawContours(out, contours, -1, color, style["outline"], cv2.LINE_AA)
    taken: List[Sequence[int]] = []
    pad = max(1, style["thickness"])
    for mask, tid, text in present:
        color = tuple(int(c) for c in track_color(tid))
        text, (tw, th), base = fit_label(text, width - 2 * pad, style)
        box_w, box_h = tw + 2 * pad, th + base + 2 * pad
        ys, xs = np.nonzero(mask)
        x, y = place_label(
            box_w, box_h, int(xs.min()), int(ys.min()), int(ys.max()), height, width, taken
        )
        taken.append((x, y, x + box_w, y + box_h))
        cv2.rectangle(out, (x, y), (x + box_w - 1, y + box_h - 1), color, -1)
        # dark text on a light colour, white on a dark one
        luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        cv2.putText(
            out,
            text,
            (x + pad, y + pad + th),
            FONT,
            style["scale"],
            ink,
            style["thickness"],
            cv2.LINE_AA,
        )
    return out


def frame_mask(track_masks, frame: int) -> Optional[np.ndarray]:
    """One frame of one track: entries are a bool [T, H, W] tensor or a list of T RLE dicts /
    None."""
    if isinstance(track_masks, torch.Tensor):
        return track_masks[frame].cpu().numpy().astype(bool)
    rle = track_masks[frame]
    if rle is None:
        return None
    from pycocotools import mask as mask_util

    rle = dict(rle)
    if isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    return mask_util.decode(rle).astype(bool)


# ----------------------------------------------------------------------------------------- model
def build_demo_model(cfg, allow_random_weights: bool = False):
    """The config's model in eval mode with MODEL.WEIGHTS loaded. Without weights it is an error (a
    random model draws nothing useful), unless `allow_random_weights`."""
    from detectron2.modeling import build_model

    from vis_zoo.engine import AtomicDetectionCheckpointer

    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        # the training tools' checkpointer: a damaged file is named in the error, models adapt old
        # weights
        # strict: a checkpoint of another method or config is an error naming what does not fit
        AtomicDetectionCheckpointer(model, strict_model=True).load(cfg.MODEL.WEIGHTS)
    elif allow_random_weights:
        logger.warning(
            "MODEL.WEIGHTS is empty: the model has random weights (predictions are meaningless)"
        )
    else:
        raise SystemExit(
            "error: no weights: give --weights PATH (e.g. output/<run>/model_final.pth) "
            "or MODEL.WEIGHTS PATH; --allow-random-weights runs a random model on "
            "purpose"
        )
    return model.eval()


def model_input_fn(cfg, height: int, width: int):
    """BGR HxWx3 uint8 frame -> uint8 tensor [C, H', W'] in cfg.INPUT.FORMAT at the test size: the
    test mapper's own transform and conversion (`vis_zoo.data.lazy_frames`) after OpenCV's BGR
    frame is put in the model's format."""
    from detectron2.data.detection_utils import convert_PIL_to_numpy
    from PIL import Image

    from vis_zoo.data.augmentation import build_clip_augmentation
    from vis_zoo.data.lazy_frames import ModelInput, video_test_transform

    augmentations = build_clip_augmentation(cfg, is_train=False)
    to_model = ModelInput(video_test_transform(augmentations, height, width))
    image_format = cfg.INPUT.FORMAT

    def fn(frame_bgr: np.ndarray) -> torch.Tensor:
        if image_format == "BGR":
            image = frame_bgr
        elif image_format == "RGB":
            image = frame_bgr[:, :, ::-1]
        else:  # any other detectron2 format ("L", "YUV-BT.601", ...) through PIL, as read_image
            image = convert_PIL_to_numpy(Image.fromarray(frame_bgr[:, :, ::-1]), image_format)
        return to_model(image)

    return fn


def dataset_info(cfg):
    """(class names, contiguous id -> dataset id or None) from the metadata of DATASETS.TEST[0],
    else DATASETS.TRAIN[0] (the start-up checks made sure their class counts match the model's)."""
    from detectron2.data import MetadataCatalog

    from vis_zoo.evaluation import invert_id_map

    names = list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN)
    if not names:
        return None, None
    meta = MetadataCatalog.get(names[0])
    names = list(meta.get("thing_classes", []) or []) or None
    id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
    return names, (invert_id_map(id_map) if id_map else None)


def describe_tracks(
    output: Dict,
    class_names: Optional[Sequence[str]],
    to_dataset_id: Optional[Dict],
    drawn: Sequence[int],
) -> Dict[int, Dict[str, object]]:
    """Every output track, highest score first: {index: {"id", "class", "category_id", "score",
    "drawn"}}; "class" is the dataset's class name ("class <k>" without names), "category_id" the
    dataset's own id (None without the metadata)."""
    scores = output["pred_scores"].float().cpu()
    tracks = {}
    for i in torch.argsort(scores, descending=True).tolist():
        label = int(output["pred_labels"][i])
        known = bool(class_names) and 0 <= label < len(class_names)
        tracks[i] = {
            "id": i,
            "class": class_names[label] if known else f"class {label}",
            "category_id": to_dataset_id.get(label) if to_dataset_id else None,
            "score": round(float(scores[i]), 4),
            "drawn": i in drawn,
        }
    return tracks


def select_tracks(output: Dict, threshold: float, max_tracks: int) -> List[int]:
    """Indices of the predictions to draw: score >= threshold, highest scores first, at most
    max_tracks."""
    scores = output["pred_scores"].float().cpu()
    order = torch.argsort(scores, descending=True).tolist()
    return [i for i in order if float(scores[i]) >= threshold][:max_tracks]


# ----------------------------------------------------------------------------------------- main
def run_demo(args) -> Dict[str, object]:
    """Run the demo; returns {"video": path, "num_frames": T, "num_predictions": K, "drawn": [ids],
    ...}."""
    from tqdm import tqdm

    from vis_zoo.engine.setup import build_config
    from vis_zoo.evaluation import ResultsJsonWriter
    from vis_zoo.utils.io import atomic_open
    from vis_zoo.utils.video_io import MappedFrames, open_frames

    opts = config_overrides(args)
    if args.weights:
        opts += ["MODEL.WEIGHTS", args.weights]
    # RLE masks: the output of a long video stays small (a bool [T, H, W] per track would not).
    with config_errors_as_exit():
        cfg = build_config(args.config_file, opts + ["MODEL.VIS.OUTPUT_RLE", "True"])
    cfg.freeze()

    configure_cpu_threads(cfg.MODEL.DEVICE)  # one thread on CPU: see vis_zoo/engine/threads.py
    source = open_frames(args.input, max_frames=args.max_frames)
    length, height, width = len(source), source.height, source.width
    name = os.path.splitext(os.path.basename(os.path.normpath(args.input)))[0] or "video"
    os.makedirs(args.output, exist_ok=True)
    logger.info("input %s: %d frames of %dx%d", args.input, length, height, width)

    model = build_demo_model(cfg, args.allow_random_weights)
    class_names, to_dataset_id = dataset_info(cfg)

    bar = tqdm(total=length, desc="inference (frames read)", unit="frame", disable=args.no_progress)
    frames = MappedFrames(
        source, model_input_fn(cfg, height, width), on_first_read=lambda i: bar.update(1)
    )
    video = {"video_id": 0, "height": height, "width": width, "length": length, "image": frames}
    with torch.no_grad():
        output = model([video])[0]
    bar.close()

    drawn = select_tracks(output, args.confidence_threshold, args.max_tracks)
    tracks = describe_tracks(output, class_names, to_dataset_id, drawn)
    labels = [f"#{i} {tracks[i]['class']} {tracks[i]['score']:.2f}" for i in drawn]

    video_path = os.path.join(args.output, f"{name}.mp4")
    fps = args.fps or source.fps
    frames_dir = os.path.join(args.output, "frames")
    if args.save_frames:
        os.makedirs(frames_dir, exist_ok=True)
    mask_dirs = {}
    if args.save_masks:  # every output track, drawn or not (demo_summary.json says which)
        for i, track in tracks.items():
            folder = f"track_{i:03d}_{track['class'].replace(' ', '_')}"
            mask_dirs[i] = os.path.join(args.output, "masks", folder)
            track["masks"] = os.path.join("masks", folder)
            os.makedirs(mask_dirs[i], exist_ok=True)
    # Written under a temporary name, renamed at the end and removed on failure, so a crash leaves
    # no half video behind.
    tmp_path = os.path.join(args.output, f".{name}.tmp.mp4")
    zoom = render_zoom(height, width, args.render_min_size)
    writer = cv2.VideoWriter(
        tmp_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width * zoom, height * zoom)
    )
    if not writer.isOpened():
        writer.release()
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise RuntimeError(
            f"cannot open a video writer for {tmp_path!r} (OpenCV without an mp4v encoder?)"
        )
    rendered = False
    try:
        for t in tqdm(range(length), desc="rendering", unit="frame", disable=args.no_progress):
            frame = source[t]
            masks = {i: frame_mask(output["pred_masks"][i], t) for i in set(drawn) | set(mask_dirs)}
            zoomed, drawn_masks = zoom_frame(frame, [masks[i] for i in drawn], zoom)
            annotated = draw_tracks(zoomed, drawn_masks, drawn, labels)
            writer.write(annotated)
            if args.save_frames:
                cv2.imwrite(os.path.join(frames_dir, f"{t:05d}.jpg"), annotated)
            for i, folder in mask_dirs.items():
                mask = masks[i]
                png = (
                    np.zeros((height, width), np.uint8)
                    if mask is None
                    else mask.astype(np.uint8) * 255
                )
                cv2.imwrite(os.path.join(folder, f"{t:05d}.png"), png)
        rendered = True
    finally:
        writer.release()
        source.close()
        if not rendered and os.path.exists(tmp_path):
            os.remove(tmp_path)  # a crash midway: the half-written video must not stay behind
    os.replace(tmp_path, video_path)

    summary = {
        "video": video_path,
        "num_frames": length,
        "height": height,
        "width": width,
        "video_height": height * zoom,
        "video_width": width * zoom,
        "num_predictions": int(len(output["pred_scores"])),
        "drawn": drawn,
        "labels": labels,
        "confidence_threshold": args.confidence_threshold,
        "max_tracks": args.max_tracks,
        "class_names": class_names,
        "tracks": list(tracks.values()),
    }
    if args.results_json:
        summary["results_json"] = os.path.join(args.output, "results.json")
        # entry by entry and frame by frame from the masks on disk: a long video's never all in
        # memory
        with ResultsJsonWriter(summary["results_json"]) as results:
            results.add_video(
                0,
                output,
                length=length,
                height=height,
                width=width,
                contiguous_to_dataset_id=to_dataset_id,
            )
    with atomic_open(os.path.join(args.output, "demo_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv=None) -> int:
    from detectron2.utils.logger import setup_logger

    from vis_zoo.utils.video_io import VideoReadError

    setup_logger(name="vis_zoo")
    args = parse_args(argv)
    try:
        summary = run_demo(args)
    except VideoReadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    note = ""
    if summary["tracks"] and not summary["drawn"]:
        note = (
            f"; no track reached --confidence-threshold {summary['confidence_threshold']} "
            f"(best score {summary['tracks'][0]['score']:.2f})"
        )
    print(
        f"wrote {summary['video']} ({summary['num_frames']} frames, {summary['num_predictions']} "
        "predictions, "
        f"{len(summary['drawn'])} drawn{note}); every track: "
        f"{os.path.join(os.path.dirname(summary['video']), 'demo_summary.json')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
