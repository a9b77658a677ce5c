"""YouTube-VIS / OVIS JSON loading, validation and registration.

The JSON format (YouTube-VIS 2019/2021/2022 and OVIS share it)::

    {"videos": [{"id", "file_names": [...], "height", "width", "length"}, ...],
     "annotations": [{"id", "video_id", "category_id", "segmentations": [T entries],
                      "bboxes": [T entries], "areas": [...], "occlusion": [...] (optional)}, ...]
                    (missing for YouTube-VIS valid/test, null for OVIS valid/test),
     "categories": [{"id", "name"}, ...]}

A per-frame entry of `segmentations`/`bboxes` is null where the object is absent from that frame.
`load_ytvis_json` turns the file into one detectron2 dataset dict per video (see
docs/architecture.md) and
checks it on the way, so that a bad file fails at load time with the file, video and field named
instead of deep inside a data-loader worker.
"""

import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

logger = logging.getLogger(__name__)

__all__ = [
    "load_ytvis_json",
    "register_ytvis_instances",
    "category_metadata",
    "validate_segmentation",
]


# ----------------------------------------------------------------------------------------------
# segmentation checks
# ----------------------------------------------------------------------------------------------
def _compressed_rle_counts(counts: bytes) -> np.ndarray:
    """Decode a COCO compressed RLE string into its run lengths (int64 array).

    Mirrors pycocotools' `rleFrString`: each number is stored in 5-bit groups (chars offset by 48),
    bit 0x20 means "more groups follow", bit 0x10 of the last group is the sign, and from the 3rd
    run on the value is a delta to the run two places before. pycocotools itself does not check that
    the runs add up to H*W (a short RLE decodes to garbage), which is why we decode here.
    """
    chars = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64)
    if chars.min() < 0 or chars.max() > 63:
        raise ValueError("counts string has characters outside the RLE alphabet ('0'..'o')")
    more = (chars & 0x20) != 0
    if more[-1]:
        raise ValueError("counts string is truncated (last character continues a number)")
    ends = np.flatnonzero(~more)  # index of the last char of every number
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 12:
        raise ValueError("counts string holds a number too large for a run length")
    # position of every char inside its number (its 5-bit group index)
    first = np.zeros(chars.size, dtype=np.int64)
    first[starts] = starts
    pos = np.arange(chars.size) - np.maximum.accumulate(first)
    # the groups of one number occupy disjoint bits, so summing them assembles the number
    values = np.add.reduceat((chars & 0x1F) << (5 * pos), starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(np.int64(1), 5 * lengths[negative])
    # Undo the delta coding: runs m >= 3 are stored relative to run m - 2.
    runs = values.copy()
    if runs.size > 3:
        runs[1::2] = np.cumsum(values[1::2])
        runs[2::2] = np.cumsum(values[2::2])
    return runs


def validate_segmentation(segm: Any, height: int, width: int) -> Any:
    """Check one per-frame segmentation and return it in loader form.

    Args:
        segm: a polygon list (list of [x0, y0, x1, y1, ...] lists), an uncompressed RLE
            ({"counts": [ints], "size": [H, W]}) or a compressed RLE ({"counts": str/bytes, ...}).
        height, width: the video's frame size; an RLE must have exactly this size.

    Returns:
        polygons unchanged; any RLE as a compressed RLE dict with `counts` as an ASCII str
        (pycocotools accepts str, and str keeps the dicts JSON-serialisable).

    Raises:
        ValueError with the reason (the caller adds file/video/frame).
    """
    if isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise ValueError(f"RLE must have 'counts' and 'size', got keys {sorted(segm)}")
        size = segm["size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise ValueError(f"RLE 'size' must be [height, width], got {size!r}")
        if [int(size[0]), int(size[1])] != [height, width]:
            raise ValueError(
                f"RLE size {list(size)} differs from the video size [{height}, {width}]"
            )
        counts = segm["counts"]
        if isinstance(counts, (list, tuple)):  # uncompressed RLE
            runs = np.asarray(counts)
            if runs.ndim != 1 or (runs.size and (runs.dtype.kind not in "iu" or runs.min() < 0)):
                raise ValueError("uncompressed RLE 'counts' must be non-negative integers")
            total = int(runs.sum())
            if total != height * width:
                raise ValueError(
                    f"uncompressed RLE counts sum to {total}, expected H*W = {height * width}"
                )
            rle = mask_util.frPyObjects(
                {"counts": list(counts), "size": [height, width]}, height, width
            )
            return {"size": [height, width], "counts": rle["counts"].decode("ascii")}
        if isinstance(counts, str):
            counts_bytes = counts.encode("ascii", errors="replace")
        elif isinstance(counts, bytes):
            counts_bytes = counts
        else:
            raise ValueError(
                f"RLE 'counts' must be a list, str or bytes, got {type(counts).__name__}"
            )
        runs = _compressed_rle_counts(counts_bytes)
        if runs.size and runs.min() < 0:
            raise ValueError("compressed RLE decodes to a negative run length")
        total = int(runs.sum())
        if total != height * width:
            raise ValueError(f"compressed RLE runs sum to {total}, expected H*W = {height * width}")
        return {"size": [height, width], "counts": counts_bytes.decode("ascii")}

    if isinstance(segm, (list, tuple)):
        if len(segm) == 0:
            raise ValueError("polygon list is empty (use null for an absent object)")
        for k, poly in enumerate(segm):
            if not isinstance(poly, (list, tuple)):
                raise ValueError(
                    f"polygon {k} must be a list of coordinates, got {type(poly).__name__}"
                )
            if len(poly) % 2 != 0:
                raise ValueError(f"polygon {k} has an odd number of coordinates ({len(poly)})")
            if len(poly) < 6:
                raise ValueError(
                    f"polygon {k} has {len(poly)} coordinates; a polygon needs >= 6 (3 points)"
                )
            if not all(isinstance(c, (int, float)) and np.isfinite(c) for c in poly):
                raise ValueError(f"polygon {k} has non-numeric or non-finite coordinates")
        return [list(p) for p in segm]

    raise ValueError(
        f"segmentation must be a polygon list or an RLE dict, got {type(segm).__name__}"
    )


def _bbox_from_segmentation(segm: Any, height: int, width: int) -> List[float]:
    """XYWH_ABS box of a (validated) polygon list or compressed RLE."""
    if isinstance(segm, dict):
        rle = segm
    else:
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width))
    return [float(v) for v in mask_util.toBbox(rle)]


# ----------------------------------------------------------------------------------------------
# metadata
# ----------------------------------------------------------------------------------------------
def category_metadata(categories: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """`thing_classes` and `thing_dataset_id_to_contiguous_id` from a JSON-style category list.

    Contiguous ids follow the order of the sorted dataset ids (so a JSON whose categories are
    listed out of order maps the same way as a sorted one).
    """
    cats = sorted(categories, key=lambda c: c["id"])
    ids = [c["id"] for c in cats]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate category ids in {ids}")
    meta = {
        "thing_classes": [c["name"] for c in cats],
        "thing_dataset_id_to_contiguous_id": {cid: i for i, cid in enumerate(ids)},
    }
    if all("color" in c for c in cats):
        meta["thing_colors"] = [list(c["color"]) for c in cats]
    return meta


# ----------------------------------------------------------------------------------------------
# loader
# ----------------------------------------------------------------------------------------------
def read_json_object(json_file: str) -> Dict[str, Any]:
    """The JSON file's top-level object; errors name the file (missing, not JSON, not an object)."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{json_file}: annotation file not found")
    try:
        with open(json_file, "r") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{json_file}: not valid JSON ({e})") from e
    except OSError as e:
        raise ValueError(f"{json_file}: cannot be read ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{json_file}: top level must be an object, got {type(data).__name__}")
    return data


def _check_per_frame_list(value, field: str, length: int, where: str) -> None:
    if not isinstance(value, list):
        raise ValueError(
            f"{where}: '{field}' must be a list with one entry per frame, got "
            f"{type(value).__name__}"
        )
    if len(value) != length:
        raise ValueError(
            f"{where}: '{field}' has {len(value)} entries but the video has {length} frames"
        )


def load_ytvis_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    check_files: bool = True,
) -> List[Dict[str, Any]]:
    """Load a YouTube-VIS/OVIS-format JSON into detectron2 video dataset dicts.

    Args:
        json_file: path of the annotation JSON.
        image_root: directory the videos' relative `file_names` are joined to.
        dataset_name: if given, the category mapping comes from this dataset's metadata when it has
            `thing_dataset_id_to_contiguous_id`; otherwise it is built from the JSON categories and
            stored in the metadata (with `thing_classes`).
        check_files: check that every frame file exists (cheap: one stat per frame).

    Returns:
        one dict per video, sorted by video id: `video_id`, `file_names` (absolute), `height`,
        `width`, `length`, and when the JSON has annotations `annotations`: a list of `length`
        lists of `{id, category_id (contiguous), bbox (XYWH_ABS), bbox_mode, segmentation,
        iscrowd, [occlusion]}` for the objects present in that frame.

    Raises:
        FileNotFoundError for a missing JSON or frame file, ValueError for everything malformed;
        the message names the JSON file, video id, frame and field.
    """
    json_file = os.fspath(json_file)
    image_root = os.path.abspath(os.fspath(image_root))
    data = read_json_object(json_file)

    videos = data.get("videos")
    if not isinstance(videos, list) or len(videos) == 0:
        raise ValueError(f"{json_file}: 'videos' is missing or empty")

    # ---- categories ----
    id_map = None
    categories = data.get("categories") or []
    meta = MetadataCatalog.get(dataset_name) if dataset_name is not None else None
    if meta is not None and meta.get("thing_dataset_id_to_contiguous_id") is not None:
        id_map = dict(meta.thing_dataset_id_to_contiguous_id)
    else:
        try:
            cat_meta = category_metadata(categories)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{json_file}: bad 'categories' ({e})") from e
        id_map = cat_meta["thing_dataset_id_to_contiguous_id"]
        if meta is not None:
            meta.set(**cat_meta)

    # ---- videos ----
    records: Dict[Any, Dict[str, Any]] = {}
    for vid in videos:
        if not isinstance(vid, dict) or "id" not in vid:
            raise ValueError(f"{json_file}: every video needs an 'id', got {str(vid)[:100]}")
        video_id = vid["id"]
        where = f"{json_file}: video {video_id}"
        if video_id in records:
            raise ValueError(f"{where}: duplicate video id")
        for key in ("file_names", "height", "width"):
            if key not in vid:
                raise ValueError(f"{where}: missing field '{key}'")
        file_names = vid["file_names"]
        if not isinstance(file_names, list) or len(file_names) == 0:
            raise ValueError(f"{where}: 'file_names' must be a non-empty list")
        length = vid.get("length", len(file_names))
        if length != len(file_names):
            raise ValueError(
                f"{where}: 'length' is {length} but 'file_names' has {len(file_names)} entries"
            )
        height, width = vid["height"], vid["width"]
        if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
            raise ValueError(
                f"{where}: 'height'/'width' must be positive integers, got {height}x{width}"
            )
        paths = [os.path.join(image_root, name) for name in file_names]
        if check_files:
            for frame_idx, path in enumerate(paths):
                if not os.path.isfile(path):
                    raise FileNotFoundError(
                        f"{where}: frame {frame_idx} file '{path}' does not exist"
                    )
        records[video_id] = {
            "video_id": video_id,
            "file_names": paths,
            "height": height,
            "width": width,
            "length": length,
        }

    # ---- annotations ----
    annotations = data.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, list):
            raise ValueError(f"{json_file}: 'annotations' must be a list or null")
        for rec in records.values():
            rec["annotations"] = [[] for _ in range(rec["length"])]
        for ann in annotations:
            _add_annotation(ann, records, id_map, json_file)

    logger.info("Loaded %d videos from %s", len(records), json_file)
    return [records[k] for k in sorted(records, key=lambda k: (str(type(k)), k))]


def _add_annotation(
    ann: Dict[str, Any], records: Dict[Any, Dict[str, Any]], id_map: Dict[int, int], json_file: str
) -> None:
    """Validate one track annotation and append its per-frame objects to its video's record."""
    if not isinstance(ann, dict):
        raise ValueError(f"{json_file}: an annotation is not an object: {str(ann)[:100]}")
    ann_id = ann.get("id")
    video_id = ann.get("video_id")
    if video_id not in records:
        raise ValueError(
            f"{json_file}: annotation {ann_id} has video_id {video_id!r}, which is not in 'videos'"
        )
    rec = records[video_id]
    where = f"{json_file}: video {video_id}, annotation {ann_id}"
    if ann_id is None:
        raise ValueError(f"{where}: missing field 'id'")
    category_id = ann.get("category_id")
    if category_id not in id_map:
        raise ValueError(f"{where}: unknown category_id {category_id!r} (known: {sorted(id_map)})")
    length, height, width = rec["length"], rec["height"], rec["width"]

    segms = ann.get("segmentations")
    if segms is None:
        raise ValueError(f"{where}: missing field 'segmentations'")
    _check_per_frame_list(segms, "segmentations", length, where)
    bboxes = ann.get("bboxes")
    if bboxes is not None:
        _check_per_frame_list(bboxes, "bboxes", length, where)
    occlusion = ann.get("occlusion")
    if occlusion is not None:
        _check_per_frame_list(occlusion, "occlusion", length, where)

    for frame_idx, segm in enumerate(segms):
        if segm is None:
            continue
        frame_where = f"{where}, frame {frame_idx} ({rec['file_names'][frame_idx]})"
        try:
            segm = validate_segmentation(segm, height, width)
        except ValueError as e:
            raise ValueError(f"{frame_where}: bad 'segmentations' entry: {e}") from None
        bbox = bboxes[frame_idx] if bboxes is not None else None
        if bbox is None:
            bbox = _bbox_from_segmentation(segm, height, width)
        elif not (
            isinstance(bbox, (list, tuple))
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) for v in bbox)
        ):
            raise ValueError(f"{frame_where}: bad 'bboxes' entry {bbox!r} (expected [x, y, w, h])")
        obj = {
            "id": ann_id,
            "category_id": id_map[category_id],
            "bbox": [float(v) for v in bbox],
            "bbox_mode": BoxMode.XYWH_ABS,
            "segmentation": segm,
            "iscrowd": int(ann.get("iscrowd", 0) or 0),
        }
        if occlusion is not None and occlusion[frame_idx] is not None:
            obj["occlusion"] = occlusion[frame_idx]
        rec["annotations"][frame_idx].append(obj)


# ----------------------------------------------------------------------------------------------
# registration
# ----------------------------------------------------------------------------------------------
def register_ytvis_instances(
    name: str, metadata: Optional[Dict[str, Any]], json_file: str, image_root: str
) -> None:
    """Register a YouTube-VIS-format video dataset in DatasetCatalog and MetadataCatalog.

    Nothing is read from disk here. `metadata` may give `thing_classes`,
    `thing_dataset_id_to_contiguous_id` (e.g. the built-in category lists) and `evaluator_type`
    ("ytvis" by default, "ovis" for OVIS); without the category fields they are read from the JSON
    categories at first load.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty str, got {name!r}")
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, name))
    meta = {"evaluator_type": "ytvis", **(metadata or {})}
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, dataset_kind="video", **meta
    )
