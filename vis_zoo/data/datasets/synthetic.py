"""A small synthetic video instance segmentation dataset, written as a real YouTube-VIS dataset.

Every video shows a few textured shapes (5 categories: disc, square, triangle, ring, cross, each
with its own colour family and fill pattern) moving over a textured, panning background. Objects
move linearly and bounce off the borders or cross the frame (entering and leaving, so their
`segmentations` are null there), change scale and brightness over time, appear late or vanish
early, and occlude each other by a fixed depth order; some videos have an unannotated foreground
pole that objects pass behind (disappearing for a while and coming back). Each annotation carries
OVIS-style per-frame `occlusion` labels as the OVIS JSONs do ("no_occlusion", "slight_occlusion":
<= 50% hidden, "severe_occlusion": > 50% hidden; null where absent).

The files are ordinary JPEG frames and a YouTube-VIS JSON, so the whole real pipeline (loader,
mapper, evaluator) runs on them. Generation is deterministic: the same arguments give a
byte-identical JSON (and identical frames with the same OpenCV build).

Registered datasets (generated lazily on first use into the cache, see `get_synthetic_root`):
    synthetic_vis_train  ~60 videos of 5-30 frames, uncompressed RLE (like YouTube-VIS train)
    synthetic_vis_val    ~20 videos of 5-30 frames, compressed RLE (like OVIS)
    synthetic_vis_long   4 videos of 100-150 frames
    synthetic_img_train  COCO-style image dataset (polygons) of single synthetic frames,
                         `dataset_kind` "image", for the COCO pseudo-video path
"""
import json
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.structures import BoxMode

from .ytvis import category_metadata, load_ytvis_json, validate_segmentation

logger = logging.getLogger(__name__)

__all__ = [
    "OCCLUSION_LEVELS",
    "SYNTHETIC_CATEGORIES",
    "SYNTHETIC_SPLITS",
    "generate_synthetic_vis",
    "generate_synthetic_images",
    "ensure_synthetic_split",
    "get_synthetic_root",
    "set_synthetic_root",
    "load_synthetic_image_json",
    "register_synthetic_datasets",
]

# Bump when the generator's output changes, so stale caches are not reused.
GENERATOR_VERSION = "v1"
ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "JPEGImages"

SYNTHETIC_CATEGORIES = [
    {"id": 1, "name": "disc", "supercategory": "shape", "color": [220, 60, 50]},
    {"id": 2, "name": "square", "supercategory": "shape", "color": [60, 190, 70]},
    {"id": 3, "name": "triangle", "supercategory": "shape", "color": [60, 90, 230]},
    {"id": 4, "name": "ring", "supercategory": "shape", "color": [235, 205, 40]},
    {"id": 5, "name": "cross", "supercategory": "shape", "color": [200, 60, 210]},
]
# Fill pattern of each category (index = contiguous id): part of what makes a class recognisable.
_CATEGORY_PATTERN = ["solid", "stripes", "checker", "solid", "stripes"]

# Default contents of each registered split. `seed` differs per split so that val is not train.
SYNTHETIC_SPLITS: Dict[str, Dict[str, Any]] = {
    "train": dict(num_videos=60, min_length=5, max_length=30, seed=0, mask_format="rle"),
    "val": dict(num_videos=20, min_length=5, max_length=30, seed=1, mask_format="compressed_rle"),
    "long": dict(num_videos=4, min_length=100, max_length=150, seed=2, mask_format="rle"),
}
SYNTHETIC_IMAGE_SPLITS: Dict[str, Dict[str, Any]] = {
    "img_train": dict(num_images=100, seed=3, mask_format="polygon"),
}
_MASK_FORMATS = ("rle", "compressed_rle", "polygon")


# ----------------------------------------------------------------------------------------------
# cache location
# ----------------------------------------------------------------------------------------------
_ROOT_OVERRIDE: Optional[str] = None


def set_synthetic_root(path: Optional[str]) -> None:
    """Use `path` as the synthetic cache root (cfg.DATASETS.SYNTHETIC_ROOT); "" or None resets it."""
    global _ROOT_OVERRIDE
    _ROOT_OVERRIDE = os.path.abspath(os.path.expanduser(path)) if path else None


def get_synthetic_root() -> str:
    """Cache root: `set_synthetic_root` value, else $VIS_ZOO_CACHE/synthetic, else ~/.cache/vis_zoo/synthetic.

    Read on every call, so changing $VIS_ZOO_CACHE (as the test fixture does) takes effect at once.
    """
    if _ROOT_OVERRIDE:
        return _ROOT_OVERRIDE
    cache = os.environ.get("VIS_ZOO_CACHE")
    if cache:
        return os.path.join(os.path.abspath(os.path.expanduser(cache)), "synthetic")
    return os.path.join(os.path.expanduser("~"), ".cache", "vis_zoo", "synthetic")


def _split_dir(split: str, root: Optional[str] = None) -> str:
    return os.path.join(root or get_synthetic_root(), GENERATOR_VERSION, split)


# ----------------------------------------------------------------------------------------------
# drawing
# ----------------------------------------------------------------------------------------------
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions, so slow motion is smooth
_ONE = 1 << _SHIFT


def _poly(points: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    """Rotate `points` ([N, 2], around 0) by `angle` and move them to (cx, cy); cv2 fixed-point."""
    c, s = np.cos(angle), np.sin(angle)
    rot = points @ np.array([[c, s], [-s, c]])
    return np.round((rot + [cx, cy]) * _ONE).astype(np.int32)


def _shape_mask(category: int, cx: float, cy: float, size: float, angle: float, height: int,
                width: int) -> np.ndarray:
    """Boolean [H, W] mask of one shape of the given contiguous category, radius ~`size` pixels."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    centre = (int(round(cx * _ONE)), int(round(cy * _ONE)))
    if category == 0:  # disc
        cv2.circle(canvas, centre, int(round(size * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
    elif category == 1:  # square
        h = 0.85 * size
        cv2.fillPoly(canvas, [_poly(np.array([[-h, -h], [h, -h], [h, h], [-h, h]]), cx, cy, angle)], 1,
                     cv2.LINE_8, _SHIFT)
    elif category == 2:  # triangle
        r = 1.15 * size
        pts = np.array([[r * np.cos(a), r * np.sin(a)] for a in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6)])
        cv2.fillPoly(canvas, [_poly(pts, cx, cy, angle)], 1, cv2.LINE_8, _SHIFT)
    elif category == 3:  # ring: disc minus an inner disc
        cv2.circle(canvas, centre, int(round(size * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        cv2.circle(canvas, centre, int(round(0.5 * size * _ONE)), 0, -1, cv2.LINE_8, _SHIFT)
    elif category == 4:  # cross: two bars
        a, b = size, 0.32 * size
        for pts in (np.array([[-a, -b], [a, -b], [a, b], [-a, b]]), np.array([[-b, -a], [b, -a], [b, a], [-b, a]])):
            cv2.fillPoly(canvas, [_poly(pts, cx, cy, angle)], 1, cv2.LINE_8, _SHIFT)
    else:
        raise ValueError(f"unknown synthetic category index {category}")
    return canvas.astype(bool)


def _fill(pattern: str, color: np.ndarray, cx: float, cy: float, angle: float, xx: np.ndarray,
          yy: np.ndarray) -> np.ndarray:
    """[H, W, 3] float RGB texture anchored to the object (it moves and turns with the object)."""
    if pattern == "solid":
        return np.broadcast_to(color, xx.shape + (3,))
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    if pattern == "stripes":
        on = np.floor(u / 3.0).astype(np.int64) % 2 == 0
    else:  # checker
        on = (np.floor(u / 4.0).astype(np.int64) + np.floor(v / 4.0).astype(np.int64)) % 2 == 0
    dark = color * 0.45
    return np.where(on[..., None], color, dark)


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Bounce: fold positions on a line into [lo, hi] (a triangle wave)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, (lo + hi) / 2)
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def _background(rng: np.random.Generator, height: int, width: int, length: int):
    """A smooth random texture larger than the frame, and the per-frame crop offsets (camera pan)."""
    pad = max(8, min(height, width) // 4)
    big_h, big_w = height + 2 * pad, width + 2 * pad
    low = rng.uniform(85, 155, size=(big_h // 8 + 2, big_w // 8 + 2, 3)).astype(np.float32)
    texture = cv2.resize(low, (big_w, big_h), interpolation=cv2.INTER_CUBIC)
    # low-contrast diagonal stripes, so the background has edges that are not objects
    yy, xx = np.mgrid[0:big_h, 0:big_w]
    period = rng.uniform(10, 20)
    texture += 12 * np.sin((xx + 0.6 * yy) * (2 * np.pi / period))[..., None]
    # desaturate so objects stand out in colour, not just in shape
    gray = texture.mean(axis=2, keepdims=True)
    texture = 0.5 * texture + 0.5 * gray
    t = np.arange(length, dtype=np.float64)
    start = rng.uniform(0, 2 * pad, size=2)
    vel = rng.uniform(-1.0, 1.0, size=2)
    off_x = np.round(_reflect(start[0] + vel[0] * t, 0, 2 * pad)).astype(int)
    off_y = np.round(_reflect(start[1] + vel[1] * t, 0, 2 * pad)).astype(int)
    return texture, off_x, off_y


def _plan_objects(rng: np.random.Generator, height: int, width: int, length: int) -> List[Dict[str, Any]]:
    """Random tracks: category, depth, per-frame centre/size/angle/brightness and presence."""
    num = int(rng.integers(2, 6))
    cats = rng.integers(0, len(SYNTHETIC_CATEGORIES), size=num)
    if rng.random() < 0.5:
        cats[1] = cats[0]  # same-category instances must be told apart by tracking, not class
    depth = rng.permutation(num)  # higher = nearer the camera
    unit = min(height, width) / 96.0
    t = np.arange(length, dtype=np.float64)
    objects = []
    for k in range(num):
        size0 = rng.uniform(7, 17) * unit
        scale_amp = rng.uniform(0.0, 0.35)
        size = size0 * (1 + scale_amp * np.sin(2 * np.pi * t / rng.uniform(15, 60) + rng.uniform(0, 2 * np.pi)))
        angle = rng.uniform(0, 2 * np.pi) + rng.uniform(-0.08, 0.08) * t
        brightness = 1 + rng.uniform(0.0, 0.25) * np.sin(2 * np.pi * t / rng.uniform(10, 40) + rng.uniform(0, 6))
        present = np.ones(length, dtype=bool)
        if rng.random() < 0.3 and length > 2:
            # crosses the frame: starts outside one border and leaves through the opposite one
            margin = 1.3 * size0
            crossing = rng.uniform(0.5, 1.2) * length
            t0 = rng.uniform(-0.3, 0.3) * length
            if rng.random() < 0.5:
                x0, x1 = (-margin, width + margin) if rng.random() < 0.5 else (width + margin, -margin)
                y0 = y1 = rng.uniform(0.2, 0.8) * height
            else:
                y0, y1 = (-margin, height + margin) if rng.random() < 0.5 else (height + margin, -margin)
                x0 = x1 = rng.uniform(0.2, 0.8) * width
            frac = (t - t0) / crossing
            cx, cy = x0 + (x1 - x0) * frac, y0 + (y1 - y0) * frac
        else:
            speed = rng.uniform(0.3, 3.0) * unit
            direction = rng.uniform(0, 2 * np.pi)
            lo = 0.6 * size0
            cx = _reflect(rng.uniform(lo, width - lo) + speed * np.cos(direction) * t, lo, width - lo)
            cy = _reflect(rng.uniform(lo, height - lo) + speed * np.sin(direction) * t, lo, height - lo)
            if rng.random() < 0.25 and length > 3:  # appears late or vanishes early
                cut = int(rng.integers(1, length - 1))
                if rng.random() < 0.5:
                    present[:cut] = False
                else:
                    present[cut:] = False
        base = np.array(SYNTHETIC_CATEGORIES[cats[k]]["color"], dtype=np.float64)
        color = np.clip(base + rng.uniform(-30, 30, size=3), 0, 255)
        objects.append(dict(category=int(cats[k]), depth=int(depth[k]), cx=cx, cy=cy, size=size,
                            angle=angle, brightness=brightness, present=present, color=color))
    return objects


_POLE_SHADE = np.array([70.0, 78.0, 86.0, 78.0])  # grey, faintly textured: scenery, not an object


def _plan_pole(rng: np.random.Generator, height: int, width: int, off_x: np.ndarray, off_y: np.ndarray):
    """Maybe a static unannotated foreground bar (a pole) that objects pass behind.

    It fixes to the scene, so it pans with the background; objects narrower than it vanish behind it
    for a few frames and come back (a gap in their track, as in OVIS). Returns `t -> bool [H, W]`.
    """
    if rng.random() >= 0.5:
        return None
    unit = min(height, width) / 96.0
    thickness = rng.uniform(20, 32) * unit
    vertical = rng.random() < 0.6
    extent = width if vertical else height
    pos = rng.uniform(0.25, 0.75) * extent
    idx = np.arange(extent, dtype=np.float64)

    def mask(t: int) -> np.ndarray:
        shift = off_x[t] - off_x[0] if vertical else off_y[t] - off_y[0]
        line = np.abs(idx + shift - pos) < thickness / 2
        return np.broadcast_to(line[None, :] if vertical else line[:, None], (height, width)).copy()

    return mask


OCCLUSION_LEVELS = ("no_occlusion", "slight_occlusion", "severe_occlusion")  # OVIS's label strings


def _occlusion_level(visible: int, full: int) -> str:
    """OVIS label from the hidden fraction of the in-frame object area (> 50% hidden: severe)."""
    hidden = 1.0 - visible / max(full, 1)
    if hidden < 0.05:
        return OCCLUSION_LEVELS[0]
    return OCCLUSION_LEVELS[1] if hidden <= 0.5 else OCCLUSION_LEVELS[2]


def _render_clip(rng: np.random.Generator, height: int, width: int, length: int):
    """Render one video.

    Returns:
        frames: list of `length` uint8 RGB arrays [H, W, 3]
        tracks: list of dicts with `category` (contiguous id) and `visible` / `occlusion`: per-frame
            lists holding a bool mask [H, W] and a level, or None where the object is not visible.
    """
    texture, off_x, off_y = _background(rng, height, width, length)
    objects = _plan_objects(rng, height, width, length)
    pole = _plan_pole(rng, height, width, off_x, off_y)
    order = sorted(range(len(objects)), key=lambda k: objects[k]["depth"])  # back to front
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    tracks = [dict(category=o["category"], visible=[None] * length, occlusion=[None] * length) for o in objects]
    frames = []
    for t in range(length):
        frame = texture[off_y[t]:off_y[t] + height, off_x[t]:off_x[t] + width].astype(np.float64)
        full_masks = {}
        for k in order:
            o = objects[k]
            if not o["present"][t]:
                continue
            mask = _shape_mask(o["category"], o["cx"][t], o["cy"][t], o["size"][t], o["angle"][t], height, width)
            if not mask.any():
                continue
            full_masks[k] = mask
            color = np.clip(o["color"] * o["brightness"][t], 0, 255)
            fill = _fill(_CATEGORY_PATTERN[o["category"]], color, o["cx"][t], o["cy"][t], o["angle"][t], xx, yy)
            frame[mask] = fill[mask]
        # visible part = own mask minus everything drawn in front of it (pole included)
        covered = np.zeros((height, width), dtype=bool)
        if pole is not None:
            covered = pole(t)
            frame[covered] = _POLE_SHADE[(xx[covered].astype(np.int64) + yy[covered].astype(np.int64)) % 4][:, None]
        for k in reversed(order):
            if k not in full_masks:
                continue
            visible = full_masks[k] & ~covered
            covered |= full_masks[k]
            if visible.any():
                tracks[k]["visible"][t] = visible
                tracks[k]["occlusion"][t] = _occlusion_level(int(visible.sum()), int(full_masks[k].sum()))
        frames.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
    return frames, tracks


# ----------------------------------------------------------------------------------------------
# mask encodings
# ----------------------------------------------------------------------------------------------
def _uncompressed_rle(mask: np.ndarray) -> Dict[str, Any]:
    """COCO uncompressed RLE (column-major runs, starting with a run of zeros)."""
    flat = mask.ravel(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"counts": runs, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer contours of the mask as COCO polygons (holes are not representable and get filled)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if len(c) >= 3:
            polys.append([float(v) + 0.5 for v in c.reshape(-1)])  # +0.5: pixel centres
    return polys


def _encode(mask: np.ndarray, mask_format: str):
    """Encode a bool mask [H, W]; returns (segmentation, mask it represents) or (None, None)."""
    if mask_format == "rle":
        return _uncompressed_rle(mask), mask
    if mask_format == "compressed_rle":
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"counts": rle["counts"].decode("ascii"), "size": list(rle["size"])}, mask
    polys = _polygons(mask)
    if not polys:
        return None, None
    h, w = mask.shape
    drawn = mask_util.decode(mask_util.merge(mask_util.frPyObjects(polys, h, w))).astype(bool)
    if not drawn.any():
        return None, None
    return polys, drawn


def _bbox(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]


def _categories_json() -> List[Dict[str, Any]]:
    return [{"id": c["id"], "name": c["name"], "supercategory": c["supercategory"]} for c in SYNTHETIC_CATEGORIES]


def _write_jpeg(path: str, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), 92])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


# ----------------------------------------------------------------------------------------------
# generators
# ----------------------------------------------------------------------------------------------
def _build_atomically(out_dir: str, overwrite: bool, build) -> str:
    """Run `build(tmp_dir)` and move tmp_dir to `out_dir` in one rename.

    If another process finished the same directory first, ours is discarded and theirs is kept.
    """
    out_dir = os.path.abspath(out_dir)
    done = os.path.join(out_dir, ANNOTATION_FILE)
    if os.path.exists(done) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a dataset ({ANNOTATION_FILE}); pass overwrite=True")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out_dir)}.tmp-")
    try:
        build(tmp)
        if overwrite and os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        elif os.path.isdir(out_dir) and not os.listdir(out_dir):
            os.rmdir(out_dir)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not os.path.exists(done):
                raise
            logger.info("%s was generated by another process; keeping that copy", out_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(out_dir, ANNOTATION_FILE)


def generate_synthetic_vis(
    out_dir: str,
    *,
    num_videos: int = 60,
    min_length: int = 5,
    max_length: int = 30,
    seed: int = 0,
    height: int = 96,
    width: int = 128,
    mask_format: str = "rle",
    overwrite: bool = False,
) -> str:
    """Write a YouTube-VIS-format synthetic dataset into `out_dir` (atomically) and return the JSON path.

    Layout: `out_dir/annotations.json` and `out_dir/JPEGImages/<video>/<frame>.jpg`
    (JSON `file_names` are relative to `out_dir/JPEGImages`).

    Args:
        num_videos: number of videos; lengths are drawn uniformly from [min_length, max_length].
        seed: everything is a function of (seed, video index, sizes): same arguments, same bytes.
        height, width: frame size in pixels.
        mask_format: "rle" (uncompressed, as YouTube-VIS train), "compressed_rle" (as OVIS) or
            "polygon" (outer contours; holes, e.g. of rings, are filled).
    """
    if mask_format not in _MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {_MASK_FORMATS}, got {mask_format!r}")
    if not (1 <= min_length <= max_length):
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    if num_videos < 1 or height < 16 or width < 16:
        raise ValueError(f"need num_videos >= 1 and a frame of at least 16x16, got {num_videos}, {height}x{width}")

    def build(tmp: str) -> None:
        videos, annotations = [], []
        for v in range(num_videos):
            rng = np.random.default_rng([seed, v])
            length = int(rng.integers(min_length, max_length + 1))
            frames, tracks = _render_clip(rng, height, width, length)
            name = f"video_{v:04d}"
            os.makedirs(os.path.join(tmp, IMAGE_DIR, name))
            file_names = []
            for t, frame in enumerate(frames):
                file_names.append(f"{name}/{t:05d}.jpg")
                _write_jpeg(os.path.join(tmp, IMAGE_DIR, name, f"{t:05d}.jpg"), frame)
            video_id = v + 1
            videos.append({"id": video_id, "name": name, "height": height, "width": width, "length": length,
                           "file_names": file_names})
            for track in tracks:
                segms, boxes, areas, occl = [], [], [], []
                for t in range(length):
                    mask = track["visible"][t]
                    segm, drawn = _encode(mask, mask_format) if mask is not None else (None, None)
                    segms.append(segm)
                    boxes.append(_bbox(drawn) if segm is not None else None)
                    areas.append(int(drawn.sum()) if segm is not None else None)
                    occl.append(track["occlusion"][t] if segm is not None else None)
                if all(s is None for s in segms):
                    continue  # never visible: not an annotation
                annotations.append({
                    "id": len(annotations) + 1, "video_id": video_id,
                    "category_id": SYNTHETIC_CATEGORIES[track["category"]]["id"], "iscrowd": 0,
                    "height": height, "width": width, "length": 1,
                    "segmentations": segms, "bboxes": boxes, "areas": areas, "occlusion": occl,
                })
        data = {
            "info": {"description": "VIS Zoo synthetic shapes", "version": GENERATOR_VERSION, "seed": seed},
            "licenses": [],
            "videos": videos,
            "annotations": annotations,
            "categories": _categories_json(),
        }
        with open(os.path.join(tmp, ANNOTATION_FILE), "w") as f:
            f.write(json.dumps(data, separators=(",", ":")))

    return _build_atomically(out_dir, overwrite, build)


def generate_synthetic_images(
    out_dir: str,
    *,
    num_images: int = 100,
    seed: int = 3,
    height: int = 96,
    width: int = 128,
    mask_format: str = "polygon",
    overwrite: bool = False,
) -> str:
    """Write a COCO-format image dataset of single synthetic frames into `out_dir`; return the JSON path.

    Layout: `out_dir/annotations.json` (COCO: images/annotations/categories) and
    `out_dir/JPEGImages/<image>.jpg`.
    """
    if mask_format not in _MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {_MASK_FORMATS}, got {mask_format!r}")

    def build(tmp: str) -> None:
        os.makedirs(os.path.join(tmp, IMAGE_DIR))
        images, annotations = [], []
        for i in range(num_images):
            rng = np.random.default_rng([seed, i])
            frames, tracks = _render_clip(rng, height, width, 1)
            file_name = f"image_{i:05d}.jpg"
            _write_jpeg(os.path.join(tmp, IMAGE_DIR, file_name), frames[0])
            images.append({"id": i + 1, "file_name": file_name, "height": height, "width": width})
            for track in tracks:
                mask = track["visible"][0]
                if mask is None:
                    continue
                segm, drawn = _encode(mask, mask_format)
                if segm is None:
                    continue
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i + 1,
                    "category_id": SYNTHETIC_CATEGORIES[track["category"]]["id"], "iscrowd": 0,
                    "segmentation": segm, "bbox": _bbox(drawn), "area": int(drawn.sum()),
                })
        data = {"info": {"description": "VIS Zoo synthetic shapes (images)", "version": GENERATOR_VERSION},
                "licenses": [], "images": images, "annotations": annotations, "categories": _categories_json()}
        with open(os.path.join(tmp, ANNOTATION_FILE), "w") as f:
            f.write(json.dumps(data, separators=(",", ":")))

    return _build_atomically(out_dir, overwrite, build)


def ensure_synthetic_split(split: str, root: Optional[str] = None) -> str:
    """Generate the registered split into the cache unless it is there; return its directory.

    `split` is one of SYNTHETIC_SPLITS ("train", "val", "long") or "img_train". Safe when several
    processes race (each builds in a temp dir; the first rename wins).
    """
    out_dir = _split_dir(split, root)
    if os.path.isfile(os.path.join(out_dir, ANNOTATION_FILE)):
        return out_dir
    logger.info("Generating synthetic split '%s' into %s", split, out_dir)
    try:
        if split in SYNTHETIC_SPLITS:
            generate_synthetic_vis(out_dir, **SYNTHETIC_SPLITS[split])
        elif split in SYNTHETIC_IMAGE_SPLITS:
            generate_synthetic_images(out_dir, **SYNTHETIC_IMAGE_SPLITS[split])
        else:
            raise KeyError(f"unknown synthetic split {split!r}; known: "
                           f"{sorted(SYNTHETIC_SPLITS) + sorted(SYNTHETIC_IMAGE_SPLITS)}")
    except FileExistsError:
        pass  # finished by another process between our check and our build
    return out_dir


# ----------------------------------------------------------------------------------------------
# image dataset loader
# ----------------------------------------------------------------------------------------------
def load_synthetic_image_json(json_file: str, image_root: str) -> List[Dict[str, Any]]:
    """COCO-format JSON -> detectron2 image dicts (`file_name`, `height`, `width`, `image_id`,
    `annotations` with `bbox` (XYWH_ABS), `bbox_mode`, `segmentation`, `category_id` (contiguous))."""
    with open(json_file) as f:
        data = json.load(f)
    id_map = category_metadata(data["categories"])["thing_dataset_id_to_contiguous_id"]
    per_image: Dict[int, List[Dict[str, Any]]] = {img["id"]: [] for img in data["images"]}
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    for ann in data["annotations"]:
        where = f"{json_file}: annotation {ann.get('id')} (image {ann.get('image_id')})"
        if ann.get("image_id") not in per_image:
            raise ValueError(f"{where}: image_id not in 'images'")
        if ann.get("category_id") not in id_map:
            raise ValueError(f"{where}: unknown category_id {ann.get('category_id')!r}")
        try:
            segm = validate_segmentation(ann["segmentation"], *sizes[ann["image_id"]])
        except ValueError as e:
            raise ValueError(f"{where}: bad 'segmentation': {e}") from None
        per_image[ann["image_id"]].append({
            "id": ann["id"], "category_id": id_map[ann["category_id"]], "bbox": [float(v) for v in ann["bbox"]],
            "bbox_mode": BoxMode.XYWH_ABS, "segmentation": segm, "iscrowd": ann.get("iscrowd", 0),
        })
    return [
        {"file_name": os.path.join(image_root, img["file_name"]), "height": img["height"], "width": img["width"],
         "image_id": img["id"], "annotations": per_image[img["id"]]}
        for img in data["images"]
    ]


# ----------------------------------------------------------------------------------------------
# registration
# ----------------------------------------------------------------------------------------------
class _SyntheticMetadata(Metadata):
    """Metadata whose `json_file`/`image_root` follow the current cache root.

    They are properties, so reading them (e.g. an evaluator opening the GT JSON) generates the split
    on first use, and a changed $VIS_ZOO_CACHE is honoured; plain Metadata could hold only one fixed
    path, set before the cache root is known.
    """

    @property
    def json_file(self) -> str:
        return os.path.join(ensure_synthetic_split(self.synthetic_split), ANNOTATION_FILE)

    @property
    def image_root(self) -> str:
        return os.path.join(ensure_synthetic_split(self.synthetic_split), IMAGE_DIR)


def _load_video_split(name: str, split: str) -> List[Dict[str, Any]]:
    out_dir = ensure_synthetic_split(split)
    return load_ytvis_json(os.path.join(out_dir, ANNOTATION_FILE), os.path.join(out_dir, IMAGE_DIR), name)


def _load_image_split(split: str) -> List[Dict[str, Any]]:
    out_dir = ensure_synthetic_split(split)
    return load_synthetic_image_json(os.path.join(out_dir, ANNOTATION_FILE), os.path.join(out_dir, IMAGE_DIR))


def register_synthetic_datasets() -> None:
    """Register synthetic_vis_{train,val,long} and synthetic_img_train. Touches no files."""
    cat_meta = category_metadata(SYNTHETIC_CATEGORIES)
    for split in SYNTHETIC_SPLITS:
        name = f"synthetic_vis_{split}"
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name, split=split: _load_video_split(name, split))
        MetadataCatalog[name] = _SyntheticMetadata(
            name=name, synthetic_split=split, evaluator_type="ytvis", dataset_kind="video", **cat_meta)
    for split in SYNTHETIC_IMAGE_SPLITS:
        name = f"synthetic_{split}"
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda split=split: _load_image_split(split))
        MetadataCatalog[name] = _SyntheticMetadata(
            name=name, synthetic_split=split, dataset_kind="image", **cat_meta)
