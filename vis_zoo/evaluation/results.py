"""Model output -> YouTube-VIS results entries (the CodaLab submission format), and results files.

A results entry is one predicted track:
    {"video_id": int, "category_id": dataset category id, "score": float,
     "segmentations": [compressed RLE {"size": [H, W], "counts": str} or None] * T}
"""
import json
import os
import zipfile
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

from vis_zoo.utils.io import atomic_open

# One copy of the results-file reader: it lives with the metric, which tools/evaluate.py loads
# without the rest of the package.
from .ytvis_metric import load_results_file

__all__ = [
    "rle_to_json",
    "encode_track_masks",
    "video_output_to_results",
    "write_results",
    "load_results_file",
    "invert_id_map",
]


def rle_to_json(rle: dict) -> dict:
    """A pycocotools RLE with bytes counts -> a JSON-serialisable one (counts as str)."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def _to_numpy(x):
    """torch tensor (any device) or array-like -> numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def encode_track_masks(masks) -> List[dict]:
    """Binary masks of one track, [T, H, W] (bool tensor or array) -> T compressed RLEs (str counts).

    Every frame is encoded, empty ones included (an all-zero mask scores like an absent one).
    """
    arr = _to_numpy(masks)
    if arr.ndim != 3:
        raise ValueError(f"track masks must be [T, H, W], got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f":
        raise ValueError("track masks must be boolean (threshold probabilities before encoding)")
    # pycocotools wants a Fortran-ordered uint8 [H, W, N] array.
    fortran = np.asfortranarray(arr.astype(np.uint8, copy=False).transpose(1, 2, 0))
    return [rle_to_json(r) for r in mask_util.encode(fortran)]


def _check_rle_frames(frames: Sequence, length: int, height: int, width: int, what: str) -> List:
    if len(frames) != length:
        raise ValueError(f"{what}: {len(frames)} frames of masks, the video has {length}")
    out = []
    for t, rle in enumerate(frames):
        if rle is None:
            out.append(None)
            continue
        if not isinstance(rle, Mapping) or "counts" not in rle or "size" not in rle:
            raise ValueError(f"{what}, frame {t}: expected an RLE dict or None, got {type(rle).__name__}")
        size = [int(s) for s in rle["size"]]
        if size != [height, width]:
            raise ValueError(f"{what}, frame {t}: mask size {size} != video size [{height}, {width}]")
        if isinstance(rle["counts"], list):  # uncompressed RLE -> compressed
            rle = mask_util.frPyObjects(dict(rle), height, width)
        out.append(rle_to_json(rle))
    return out


def video_output_to_results(
    video_id,
    output: Mapping,
    *,
    length: int,
    height: int,
    width: int,
    contiguous_to_dataset_id: Optional[Mapping[int, int]] = None,
) -> List[dict]:
    """Convert one video's model output into results entries.

    output: {"pred_scores": [K] float, "pred_labels": [K] long (contiguous ids), "pred_masks": K
    entries, each a bool [T, H, W] tensor/array at the original resolution or a sequence of T RLE
    dicts / None (a list, or a `StoredTrackMasks` read from disk frame by frame)}. `length`,
    `height`, `width` are the video's (from the dataset); a mismatch raises a ValueError naming the
    video. `contiguous_to_dataset_id` maps labels to dataset category ids
    (identity when None).
    """
    what = f"video {video_id}"
    for key in ("pred_scores", "pred_labels", "pred_masks"):
        if key not in output:
            raise ValueError(f"{what}: model output has no '{key}' (keys: {sorted(output)})")
    scores = _to_numpy(output["pred_scores"]).reshape(-1).astype(np.float64)
    labels = _to_numpy(output["pred_labels"]).reshape(-1).astype(np.int64)
    masks = output["pred_masks"]
    if len(scores) != len(labels) or len(scores) != len(masks):
        raise ValueError(
            f"{what}: {len(scores)} scores, {len(labels)} labels and {len(masks)} masks (must be equal)"
        )
    results = []
    for i in range(len(scores)):
        label = int(labels[i])
        if contiguous_to_dataset_id is not None:
            if label not in contiguous_to_dataset_id:
                raise ValueError(f"{what}: predicted label {label} is not a contiguous id of the dataset")
            category_id = int(contiguous_to_dataset_id[label])
        else:
            category_id = label
        track = masks[i]
        if not hasattr(track, "shape"):  # T RLE dicts / None: a list, or the model's on-disk sequence
            segmentations = _check_rle_frames(track, length, height, width, f"{what}, track {i}")
        else:
            arr = track
            shape = tuple(arr.shape)
            if len(shape) != 3:
                raise ValueError(f"{what}, track {i}: masks must be [T, H, W], got shape {shape}")
            if shape[0] != length:
                raise ValueError(f"{what}, track {i}: {shape[0]} frames of masks, the video has {length}")
            if shape[1:] != (height, width):
                raise ValueError(
                    f"{what}, track {i}: mask size {list(shape[1:])} != video size [{height}, {width}]"
                )
            segmentations = encode_track_masks(arr)
        results.append(
            {
                "video_id": video_id,
                "category_id": category_id,
                "score": float(scores[i]),
                "segmentations": segmentations,
            }
        )
    return results


def write_results(results: List[dict], output_dir: str, name: str = "results") -> Tuple[str, str]:
    """Write `<name>.json` and `<name>.zip` (holding `results.json`: the CodaLab submission),
    each atomically. Returns the two paths."""
    text = json.dumps(results)
    json_path = os.path.join(output_dir, f"{name}.json")
    zip_path = os.path.join(output_dir, f"{name}.zip")
    with atomic_open(json_path, "w") as f:
        f.write(text)
    with atomic_open(zip_path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("results.json", text)
    return json_path, zip_path


def invert_id_map(dataset_id_to_contiguous_id: Mapping[int, int]) -> Dict[int, int]:
    """metadata.thing_dataset_id_to_contiguous_id -> {contiguous id: dataset id}."""
    return {int(v): int(k) for k, v in dataset_id_to_contiguous_id.items()}
