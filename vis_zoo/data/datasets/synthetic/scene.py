"""What a synthetic video shows: shapes, their motion and occlusion, rendered to RGB frames.

`render_clip(rng, height, width, length)` returns the frames and, per object, its visible mask in
every frame (None where it is out of view or fully hidden) and its OVIS-style occlusion label.
Everything is a function of the random generator's state, so a seed gives the same video.
"""

from typing import Any, Dict, List

import cv2
import numpy as np

__all__ = ["OCCLUSION_LEVELS", "SYNTHETIC_CATEGORIES", "render_clip"]

SYNTHETIC_CATEGORIES = [
    {"id": 1, "name": "disc", "supercategory": "shape", "color": [220, 60, 50]},
    {"id": 2, "name": "square", "supercategory": "shape", "color": [60, 190, 70]},
    {"id": 3, "name": "triangle", "supercategory": "shape", "color": [60, 90, 230]},
    {"id": 4, "name": "ring", "supercategory": "shape", "color": [235, 205, 40]},
    {"id": 5, "name": "cross", "supercategory": "shape", "color": [200, 60, 210]},
]
# Fill pattern of each category (index = contiguous id): part of what makes a class recognisable.
_CATEGORY_PATTERN = ["solid", "stripes", "checker", "solid", "stripes"]


_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions, so slow motion is smooth
_ONE = 1 << _SHIFT


def _poly(points: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    """Rotate `points` ([N, 2], around 0) by `angle` and move them to (cx, cy); cv2 fixed-point."""
    c, s = np.cos(angle), np.sin(angle)
    rot = points @ np.array([[c, s], [-s, c]])
    return np.round((rot + [cx, cy]) * _ONE).astype(np.int32)


def _shape_mask(
    category: int, cx: float, cy: float, size: float, angle: float, height: int, width: int
) -> np.ndarray:
    """Boolean [H, W] mask of one shape of the given contiguous category, radius ~`size` pixels."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    centre = (int(round(cx * _ONE)), int(round(cy * _ONE)))
    if category == 0:  # disc
        cv2.circle(canvas, centre, int(round(size * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
    elif category == 1:  # square
        h = 0.85 * size
        cv2.fillPoly(
            canvas,
            [_poly(np.array([[-h, -h], [h, -h], [h, h], [-h, h]]), cx, cy, angle)],
            1,
            cv2.LINE_8,
            _SHIFT,
        )
    elif category == 2:  # triangle
        r = 1.15 * size
        pts = np.array(
            [[r * np.cos(a), r * np.sin(a)] for a in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6)]
        )
        cv2.fillPoly(canvas, [_poly(pts, cx, cy, angle)], 1, cv2.LINE_8, _SHIFT)
    elif category == 3:  # ring: disc minus an inner disc
        cv2.circle(canvas, centre, int(round(size * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        cv2.circle(canvas, centre, int(round(0.5 * size * _ONE)), 0, -1, cv2.LINE_8, _SHIFT)
    elif category == 4:  # cross: two bars
        a, b = size, 0.32 * size
        for pts in (
            np.array([[-a, -b], [a, -b], [a, b], [-a, b]]),
            np.array([[-b, -a], [b, -a], [b, a], [-b, a]]),
        ):
            cv2.fillPoly(canvas, [_poly(pts, cx, cy, angle)], 1, cv2.LINE_8, _SHIFT)
    else:
        raise ValueError(f"unknown synthetic category index {category}")
    return canvas.astype(bool)


def _fill(
    pattern: str,
    color: np.ndarray,
    cx: float,
    cy: float,
    angle: float,
    xx: np.ndarray,
    yy: np.ndarray,
) -> np.ndarray:
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
    """A smooth random texture larger than the frame, and the per-frame crop offsets (camera
    pan)."""
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


def _plan_objects(
    rng: np.random.Generator, height: int, width: int, length: int
) -> List[Dict[str, Any]]:
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
        size = size0 * (
            1 + scale_amp * np.sin(2 * np.pi * t / rng.uniform(15, 60) + rng.uniform(0, 2 * np.pi))
        )
        angle = rng.uniform(0, 2 * np.pi) + rng.uniform(-0.08, 0.08) * t
        brightness = 1 + rng.uniform(0.0, 0.25) * np.sin(
            2 * np.pi * t / rng.uniform(10, 40) + rng.uniform(0, 6)
        )
        present = np.ones(length, dtype=bool)
        if rng.random() < 0.3 and length > 2:
            # crosses the frame: starts outside one border and leaves through the opposite one
            margin = 1.3 * size0
            crossing = rng.uniform(0.5, 1.2) * length
            t0 = rng.uniform(-0.3, 0.3) * length
            if rng.random() < 0.5:
                x0, x1 = (
                    (-margin, width + margin) if rng.random() < 0.5 else (width + margin, -margin)
                )
                y0 = y1 = rng.uniform(0.2, 0.8) * height
            else:
                y0, y1 = (
                    (-margin, height + margin) if rng.random() < 0.5 else (height + margin, -margin)
                )
                x0 = x1 = rng.uniform(0.2, 0.8) * width
            frac = (t - t0) / crossing
            cx, cy = x0 + (x1 - x0) * frac, y0 + (y1 - y0) * frac
        else:
            speed = rng.uniform(0.3, 3.0) * unit
            direction = rng.uniform(0, 2 * np.pi)
            lo = 0.6 * size0
            cx = _reflect(
                rng.uniform(lo, width - lo) + speed * np.cos(direction) * t, lo, width - lo
            )
            cy = _reflect(
                rng.uniform(lo, height - lo) + speed * np.sin(direction) * t, lo, height - lo
            )
            if rng.random() < 0.25 and length > 3:  # appears late or vanishes early
                cut = int(rng.integers(1, length - 1))
                if rng.random() < 0.5:
                    present[:cut] = False
                else:
                    present[cut:] = False
        base = np.array(SYNTHETIC_CATEGORIES[cats[k]]["color"], dtype=np.float64)
        color = np.clip(base + rng.uniform(-30, 30, size=3), 0, 255)
        objects.append(
            dict(
                category=int(cats[k]),
                depth=int(depth[k]),
                cx=cx,
                cy=cy,
                size=size,
                angle=angle,
                brightness=brightness,
                present=present,
                color=color,
            )
        )
    return objects


_POLE_SHADE = np.array([70.0, 78.0, 86.0, 78.0])  # grey, faintly textured: scenery, not an object


def _plan_pole(
    rng: np.random.Generator, height: int, width: int, off_x: np.ndarray, off_y: np.ndarray
):
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


def render_clip(rng: np.random.Generator, height: int, width: int, length: int):
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
    tracks = [
        dict(category=o["category"], visible=[None] * length, occlusion=[None] * length)
        for o in objects
    ]
    frames = []
    for t in range(length):
        frame = texture[off_y[t] : off_y[t] + height, off_x[t] : off_x[t] + width].astype(
            np.float64
        )
        full_masks = {}
        for k in order:
            o = objects[k]
            if not o["present"][t]:
                continue
            mask = _shape_mask(
                o["category"], o["cx"][t], o["cy"][t], o["size"][t], o["angle"][t], height, width
            )
            if not mask.any():
                continue
            full_masks[k] = mask
            color = np.clip(o["color"] * o["brightness"][t], 0, 255)
            fill = _fill(
                _CATEGORY_PATTERN[o["category"]],
                color,
                o["cx"][t],
                o["cy"][t],
                o["angle"][t],
                xx,
                yy,
            )
            frame[mask] = fill[mask]
        # visible part = own mask minus everything drawn in front of it (pole included)
        covered = np.zeros((height, width), dtype=bool)
        if pole is not None:
            covered = pole(t)
            frame[covered] = _POLE_SHADE[
                (xx[covered].astype(np.int64) + yy[covered].astype(np.int64)) % 4
            ][:, None]
        for k in reversed(order):
            if k not in full_masks:
                continue
            visible = full_masks[k] & ~covered
            covered |= full_masks[k]
            if visible.any():
                tracks[k]["visible"][t] = visible
                tracks[k]["occlusion"][t] = _occlusion_level(
                    int(visible.sum()), int(full_masks[k].sum())
                )
        frames.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
    return frames, tracks


# ----------------------------------------------------------------------------------------------
# mask encodings
# ----------------------------------------------------------------------------------------------
