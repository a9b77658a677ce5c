"""The YouTube-VIS / OVIS video instance segmentation metric, vectorised.

Our own implementation of the reference scorer (the YouTube-VIS fork of the COCO API that the
CodaLab servers run, https://github.com/youtubevos/cocoapi; docs/evaluation.md describes it). It
gives the same numbers as that scorer, quirks included (stable sorts, float64 machine-epsilon in
the precision, 101 recall points, GT sizes taken from the GT `areas`, 128²/256² size ranges, crowd
GTs), with these deliberate differences:

* a prediction whose frame count differs from its video, or whose masks are not at the video's
  resolution, raises a ValueError naming the video (the reference silently truncates / scores 0);
* a result for a video that is not in the GT raises a ValueError naming the video;
* a GT without videos, or a GT annotation whose category is not listed, raises a ValueError naming
  it (the reference blames the results / silently drops the track);
* an empty results list scores 0 with a warning (the reference crashes on it);
* a GT annotation whose `id` is 0 is treated like any other (the reference, which stores matched GT
  ids in an array where 0 means "unmatched", would count a prediction matched to it as a false
  positive). YouTube-VIS and OVIS ids start at 1, so real files are unaffected.
* OVIS: predictions have no occlusion score (as in the official OVIS scorer): an unmatched
  prediction is a false positive in every occlusion band. A GT track without occlusion labels is
  ignored in the three bands, with a warning naming it (the official scorer stops with an error).

How it is made fast (docs/evaluation.md has the numbers):
* track areas and intersections: every RLE string is decoded once, by one pycocotools call per video
  (or chunk of its frames), see `overlaps_of_job`; unions follow from the per-track pixel totals,
  U = |P| + |G| - I, exactly as the frame-by-frame walk of the reference adds them up;
* matching: the greedy COCO matching is sequential in the predictions (highest score first), so the
  loop runs over the prediction rank d (at most 100 steps) and each step handles every
  (video, category, size range, IoU threshold, GT) at once with numpy;
* accumulation: one stable lexsort of all kept predictions, then cumulative sums per category;
* a `Worker` process can take part of the videos' mask work (tools/evaluate.py starts one).

Public entry points: `evaluate_ytvis(gt_json, results)` and `format_results_table(result)`.
A straightforward per-pair loop implementation, used to cross-check this one, lives with the tests
(`tests/evaluation/ytvis_loop.py`).
"""

import bisect
import contextlib
import gc
import io
import json
import logging
import math
import os
import pickle
import queue
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

# Named explicitly: tools/evaluate.py may load this file under another module name.
logger = logging.getLogger("vis_zoo.evaluation.ytvis_metric")

__all__ = [
    "IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "MAX_DETS",
    "AREA_RANGES",
    "OCCLUSION_BANDS",
    "OCCLUSION_LABEL_SCORES",
    "STAT_NAMES",
    "OCCLUSION_STAT_NAMES",
    "GroundTruth",
    "GTTrack",
    "PredTrack",
    "YTVISResult",
    "load_ground_truth",
    "load_predictions",
    "load_results_file",
    "load_gt_file",
    "gc_paused",
    "track_ious",
    "video_overlaps",
    "Worker",
    "prepare_overlaps_job",
    "overlaps_of_job",
    "warn_unlabelled_tracks",
    "track_occlusion_score",
    "greedy_match",
    "accumulate",
    "per_category_ap",
    "evaluate_ytvis",
    "summarize",
    "make_result",
    "settings_ranges",
    "format_results_table",
]

# Built with linspace exactly as the reference does: np.arange would give 0.7500000000000001-like
# values, and the AP50/AP75 look-ups compare thresholds with ==.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
# Track size = mean per-frame area; both ends inclusive. Not COCO's 32²/96²: videos are larger.
AREA_RANGES: Tuple[Tuple[str, Tuple[float, float]], ...] = (
    ("all", (0.0, 1e5**2)),
    ("small", (0.0, 128.0**2)),
    ("medium", (128.0**2, 256.0**2)),
    ("large", (256.0**2, 1e5**2)),
)
# OVIS: per-track occlusion score bands (both ends inclusive, like the size ranges).
OCCLUSION_BANDS: Tuple[Tuple[str, Tuple[float, float]], ...] = (
    ("light", (0.0, 0.25)),
    ("medium", (0.25, 0.5)),
    ("heavy", (0.5, 1.0)),
)
OCCLUSION_LABEL_SCORES = {"no_occlusion": 0.0, "slight_occlusion": 0.25, "severe_occlusion": 0.75}
STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)
OCCLUSION_STAT_NAMES = ("APso", "APmo", "APho", "ARso", "ARmo", "ARho")

_EPS = np.spacing(1)  # float64 machine epsilon, as in the reference precision formula


# ----------------------------------------------------------------------------------------------
# Parsing and validation (shared with the loop implementation)
# ----------------------------------------------------------------------------------------------
@dataclass
class GTTrack:
    """One GT annotation (track). `rles[t]` is a compressed RLE dict or None (absent in frame t).
    Tracks keep the JSON order, which decides ties in the matching."""

    ann_id: int
    video_index: int
    category_index: int
    iscrowd: bool
    mean_area: float  # mean of the non-null, non-zero `areas` entries (0 if none)
    occlusion: float  # OVIS occlusion score in [0, 1]; nan when the track has no labels
    rles: List[Optional[dict]]


@dataclass
class PredTrack:
    """One predicted track (results entry) whose category is in the GT; tracks keep the results
    list's order, the tie-break order of the reference's stable sorts.

    `segms` is the entry's per-frame list as given (compressed RLE dicts or None, possibly
    uncompressed RLEs); frames are validated when the metric reads them (`rles()` does it all at
    once), so that a large results file is walked frame by frame only once."""

    video_index: int
    category_index: int
    score: float
    segms: Sequence
    index: int  # position in the results list, for error messages
    video_id: object

    def what(self) -> str:
        return f"result #{self.index} (video {self.video_id})"

    def rles(self, height: int, width: int) -> List[Optional[dict]]:
        """Every frame validated: compressed RLE dicts or None."""
        return [
            _pred_frame_rle(s, height, width, self.what(), t) if s else None
            for t, s in enumerate(self.segms)
        ]


@dataclass
class GroundTruth:
    """The parsed GT JSON: videos sorted by id, categories sorted by id, tracks in JSON order."""

    video_ids: List[int]
    heights: List[int]
    widths: List[int]
    lengths: List[int]
    category_ids: List[int]
    category_names: List[str]
    tracks: List[GTTrack]
    has_annotations: bool
    has_occlusion_labels: bool
    video_index: Dict[int, int] = field(default_factory=dict)
    category_index: Dict[int, int] = field(default_factory=dict)
    unlabelled_tracks: List[Tuple[object, object]] = field(
        default_factory=list
    )  # (video id, ann id)


def _frame_score(label, ann_id) -> Optional[float]:
    """OVIS per-frame occlusion label -> score (none 0, slight 0.25, severe 0.75); None =
    unlabelled."""
    if label is None:
        return None
    if isinstance(label, str):
        if label not in OCCLUSION_LABEL_SCORES:
            raise ValueError(
                f"GT annotation {ann_id}: unknown occlusion label {label!r} "
                f"(expected one of {sorted(OCCLUSION_LABEL_SCORES)} or a number in [0, 1])"
            )
        return OCCLUSION_LABEL_SCORES[label]
    value = float(label)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"GT annotation {ann_id}: occlusion score {label!r} is outside [0, 1]")
    return value


def track_occlusion_score(labels: Optional[Sequence], ann_id=None) -> float:
    """Track occlusion score: mean of its top ceil(n/2) labelled frame scores; nan if no label."""
    if not labels:
        return float("nan")
    scores = [s for s in (_frame_score(x, ann_id) for x in labels) if s is not None]
    if not scores:
        return float("nan")
    top = sorted(scores, reverse=True)[: int(math.ceil(len(scores) / 2))]
    return float(np.mean(top))


def _check_rle_size(rle: dict, height: int, width: int, what: str) -> None:
    size = rle.get("size")
    if size is None or len(size) != 2 or int(size[0]) != height or int(size[1]) != width:
        raise ValueError(
            f"{what}: mask size {size} does not match the video size [{height}, {width}]"
        )


def _gt_frame_to_rle(segm, height: int, width: int, what: str) -> Optional[dict]:
    """A GT frame segmentation (polygons, uncompressed or compressed RLE, or null) -> RLE or
    None."""
    if not segm:  # null / empty: the object is absent in this frame
        return None
    if isinstance(segm, list):  # polygons: merge all parts into one mask
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width))
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        rle = mask_util.frPyObjects(segm, height, width)
    elif isinstance(segm, dict) and "counts" in segm:
        rle = segm
    else:
        raise ValueError(f"{what}: unsupported segmentation {type(segm).__name__}")
    _check_rle_size(rle, height, width, what)
    return rle


def _pred_frame_rle(segm, height: int, width: int, what: str, t: int) -> dict:
    """One present prediction frame -> a compressed RLE dict at the video size, or a ValueError
    naming the result, video and frame. The common case (a compressed RLE of the right size) is
    returned as is."""
    try:
        size, counts = segm["size"], segm["counts"]
        if isinstance(counts, list):  # uncompressed RLE: accept it, compress it
            segm = mask_util.frPyObjects(segm, height, width)
        ok = size[0] == height and size[1] == width
    except (TypeError, KeyError, IndexError, ValueError):
        raise ValueError(
            f"{what}, frame {t}: a prediction frame must be an RLE dict {{size, counts}} or null, "
            f"got {segm!r:.80}"
        ) from None
    if not ok:
        raise ValueError(
            f"{what}, frame {t}: mask size {list(size)} does not match the video size "
            f"[{height}, {width}]"
        )
    return segm


def load_ground_truth(gt_json: dict) -> GroundTruth:
    """Parse and validate a YouTube-VIS / OVIS GT JSON dict (annotations may be missing or None).

    Raises ValueError for a GT without videos, an annotation whose category is not listed, or a
    malformed video / annotation (each message names the video and annotation at fault)."""
    if not isinstance(gt_json, dict):
        raise ValueError(
            f"GT JSON must be a dict with 'videos' and 'categories', got {type(gt_json).__name__}"
        )
    for key in ("videos", "categories"):
        if not isinstance(gt_json.get(key), list):
            raise ValueError(f"GT JSON has no '{key}' list")
    if not gt_json["videos"]:
        raise ValueError(
            "the GT JSON has no videos (its 'videos' list is empty): there is nothing to score"
        )
    videos = sorted(gt_json["videos"], key=lambda v: v["id"])
    video_ids, heights, widths, lengths = [], [], [], []
    for v in videos:
        for key in ("id", "height", "width"):
            if key not in v:
                raise ValueError(f"GT video {v.get('id', '?')}: missing key '{key}'")
        video_ids.append(v["id"])
        heights.append(int(v["height"]))
        widths.append(int(v["width"]))
        if "length" in v:
            lengths.append(int(v["length"]))
        elif "file_names" in v:
            lengths.append(len(v["file_names"]))
        else:
            raise ValueError(f"GT video {v['id']}: needs 'length' or 'file_names'")
    categories = sorted(gt_json["categories"], key=lambda c: c["id"])
    gt = GroundTruth(
        video_ids=video_ids,
        heights=heights,
        widths=widths,
        lengths=lengths,
        category_ids=[c["id"] for c in categories],
        category_names=[str(c.get("name", c["id"])) for c in categories],
        tracks=[],
        has_annotations=gt_json.get("annotations") is not None and len(gt_json["annotations"]) > 0,
        has_occlusion_labels=False,
    )
    gt.video_index = {vid: i for i, vid in enumerate(video_ids)}
    gt.category_index = {cid: i for i, cid in enumerate(gt.category_ids)}

    skipped = 0
    for ann in gt_json.get("annotations") or []:
        ann_id = ann.get("id")
        vid = ann.get("video_id")
        if vid not in gt.video_index:
            skipped += 1  # the reference only loads annotations of listed videos
            continue
        if ann.get("category_id") not in gt.category_index:
            # The reference would silently leave the track out; a GT object that can never be
            # matched is almost always a broken category list, so stop here.
            raise ValueError(
                f"GT annotation {ann_id} of video {vid}: category_id {ann.get('category_id')!r} is "
                f"not in the GT 'categories' (known ids: {gt.category_ids})"
            )
        vi = gt.video_index[vid]
        h, w, length = heights[vi], widths[vi], lengths[vi]
        segms = ann.get("segmentations")
        what = f"GT annotation {ann_id} of video {vid}"
        if not isinstance(segms, list) or len(segms) != length:
            n = len(segms) if isinstance(segms, list) else None
            raise ValueError(f"{what}: 'segmentations' has {n} frames, the video has {length}")
        hw = [h, w]
        # Fast path for the usual compressed RLE of the right size; anything else is converted
        # (polygons, uncompressed RLE) or rejected by _gt_frame_to_rle.
        rles = [
            s
            if (not s or (type(s) is dict and type(s.get("counts")) is str and s.get("size") == hw))
            else _gt_frame_to_rle(s, h, w, f"{what}, frame {t}")
            for t, s in enumerate(segms)
        ]
        rles = [r if r else None for r in rles]
        if "areas" in ann and ann["areas"] is not None:
            nonzero = [a for a in ann["areas"] if a]
        else:  # convenience for hand-made files: the reference needs `areas`; take the mask areas
            nonzero = [a for a in (int(mask_util.area(r)) if r else 0 for r in rles) if a]
        mean_area = float(np.array(nonzero).mean()) if nonzero else 0.0
        occ_labels = ann.get("occlusion")
        occlusion = track_occlusion_score(occ_labels, ann_id)
        if occ_labels:
            gt.has_occlusion_labels = True
        if math.isnan(occlusion):
            gt.unlabelled_tracks.append((vid, ann_id))
        gt.tracks.append(
            GTTrack(
                ann_id=ann_id,
                video_index=vi,
                category_index=gt.category_index[ann["category_id"]],
                iscrowd=bool(ann.get("iscrowd", 0)),
                mean_area=mean_area,
                occlusion=occlusion,
                rles=rles,
            )
        )
    if skipped:
        logger.warning("Skipped %d GT annotation(s) of a video not listed in the GT JSON.", skipped)
    return gt


def warn_unlabelled_tracks(gt: GroundTruth) -> None:
    """OVIS bands requested: say which GT tracks have no occlusion label (they are ignored in every
    band, as if crowd; the official OVIS scorer stops with an error on such a track)."""
    if not gt.unlabelled_tracks:
        return
    shown = ", ".join(f"track {a} of video {v}" for v, a in gt.unlabelled_tracks[:10])
    more = f" and {len(gt.unlabelled_tracks) - 10} more" if len(gt.unlabelled_tracks) > 10 else ""
    logger.warning(
        "%d GT track(s) have no 'occlusion' label (%s%s): they are ignored in all three occlusion "
        "bands (light, medium, heavy; a prediction matched to one is ignored there too) and count "
        "normally in "
        "the other numbers. The official OVIS scorer stops with an error on such a file.",
        len(gt.unlabelled_tracks),
        shown,
        more,
    )


def load_predictions(gt: GroundTruth, results: Sequence[dict]) -> Tuple[List[PredTrack], int]:
    """Validate the results list against the GT. Returns (tracks of known categories, number
    dropped).

    Raises ValueError for a result whose video is not in the GT, whose frame count differs from the
    video's, or that misses a key / has a bad score. Frames (mask sizes, RLE format) are checked
    when they are read: `PredTrack.rles` and the overlap computation raise a ValueError naming the
    result, video and frame.
    """
    if results is None:
        results = []
    if not isinstance(results, (list, tuple)):
        raise ValueError(f"results must be a list of track entries, got {type(results).__name__}")
    if not results:
        logger.warning(
            "The results list is empty (no predicted track at all): every number is 0 where "
            "the GT has tracks."
        )
    tracks, dropped = [], 0
    video_index, category_index, lengths = gt.video_index, gt.category_index, gt.lengths
    for i, entry in enumerate(results):
        try:
            vid, cat, score, segms = (
                entry["video_id"],
                entry["category_id"],
                entry["score"],
                entry["segmentations"],
            )
        except (KeyError, TypeError):
            if not isinstance(entry, dict):
                raise ValueError(
                    f"result #{i} is a {type(entry).__name__}, expected a dict"
                ) from None
            missing = [
                k for k in ("video_id", "category_id", "score", "segmentations") if k not in entry
            ]
            raise ValueError(
                f"result #{i} (video {entry.get('video_id', '?')}): missing key '{missing[0]}'"
            ) from None
        vi = video_index.get(vid)
        if vi is None:
            raise ValueError(f"result #{i}: video_id {vid!r} is not a video of the GT JSON")
        try:
            score = float(score)
        except (TypeError, ValueError):
            raise ValueError(
                f"result #{i} (video {vid}): score {entry['score']!r} is not a number"
            ) from None
        if score != score:
            raise ValueError(f"result #{i} (video {vid}): score is NaN")
        length = lengths[vi]
        if not isinstance(segms, (list, tuple)) or len(segms) != length:
            n = len(segms) if isinstance(segms, (list, tuple)) else None
            raise ValueError(
                f"result #{i} (video {vid}): prediction has {n} frames, the video has {length}"
            )
        ki = category_index.get(cat)
        if ki is None:
            dropped += 1  # the reference drops categories that are not in the GT
            continue
        tracks.append(PredTrack(vi, ki, score, segms, i, vid))
    if dropped:
        logger.info("Dropped %d result(s) whose category_id is not a GT category.", dropped)
    return tracks, dropped


def load_results_file(path: str) -> List[dict]:
    """Read a results list from a .json file or a submission .zip holding results.json.

    Raises ValueError naming the file when it is missing, corrupt, or not a list.
    """
    if not os.path.isfile(path):
        raise ValueError(f"results file {path!r} does not exist")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if os.path.basename(n) == "results.json"]
                if not names:
                    raise ValueError(f"results zip {path!r} holds no results.json")
                with zf.open(names[0]) as f:
                    data = json.load(io.TextIOWrapper(f, encoding="utf-8"))
        else:
            with open(path, "r", encoding="utf-8") as f:
                data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise ValueError(f"results file {path!r} is not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise ValueError(f"results file {path!r} must hold a JSON list, got {type(data).__name__}")
    return data


def load_gt_file(path: str) -> dict:
    """Read a GT JSON file; ValueError naming the file when it is missing, corrupt or not an
    object."""
    if not os.path.isfile(path):
        raise ValueError(f"GT JSON {path!r} does not exist")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"GT JSON {path!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"GT JSON {path!r} must hold an object with videos/categories/annotations")
    return data


# ----------------------------------------------------------------------------------------------
# Track areas and intersections: one pycocotools call per video (or per chunk of its frames)
# ----------------------------------------------------------------------------------------------
# Why this shape: decoding the compressed RLE strings dominates the cost, and every pycocotools
# call pays ~20-30 us of Python-side checks, so the goal is to decode each string once, in few
# calls. `mask.iou` decodes its inputs once and returns, for every pair, I/U; for a pair whose
# declared sizes differ it returns -1 without walking the runs (maskApi.c, rleIou). We therefore
# declare every mask of frame t of "slot" k (a category present in both the predictions and the GT
# of the video) as [H, W + k * T + t]: one call over all frames gives the intersections of exactly
# the same-frame, same-category pairs. The width is only bookkeeping: run positions and the bounding
# boxes pycocotools derives from them use H alone. An all-ones probe mask per (slot, frame) on each
# side turns the same call into an area meter: IoU(mask, all-ones) = |mask| / (H W).
_CELLS_PER_CALL = (
    32768  # target size of one call's dense IoU matrix (a call costs ~25 us + ~12 ns a cell)
)
_ones_counts: Dict[int, bytes] = {}


def _all_ones_counts(height: int, width: int) -> bytes:
    """Compressed RLE counts of an all-ones HxW mask."""
    key = height * width
    if key not in _ones_counts:
        _ones_counts[key] = mask_util.frPyObjects(
            {"counts": [0, key], "size": [height, width]}, height, width
        )["counts"]
    return _ones_counts[key]


def _present_frames(track: Sequence, height: int, width: int, what) -> Tuple[List[int], list]:
    """(frame indices, compressed counts) of a track's present frames, each checked to be a
    compressed RLE of the video size (a prediction frame may be an uncompressed RLE: converted).
    `what()` names the track in errors (called only then); None = already validated (GT)."""
    ts = [t for t, s in enumerate(track) if s]
    frames = [track[t] for t in ts]
    if what is None:
        return ts, [f["counts"] for f in frames]
    hw = [height, width]
    try:
        counts = [f["counts"] for f in frames]
        fine = [f["size"] for f in frames].count(hw) == len(frames) and set(map(type, counts)) <= {
            str,
            bytes,
        }
    except (TypeError, KeyError):
        fine = False
    if not fine:  # find the culprit frame(s): convert them or raise an error naming them
        name = what()
        counts = [_pred_frame_rle(f, height, width, name, t)["counts"] for t, f in zip(ts, frames)]
    return ts, counts  # a tuple


def video_overlaps(
    pred_tracks: Sequence[Sequence[Optional[dict]]],
    pred_slots: Sequence[int],
    gt_tracks: Sequence[Sequence[Optional[dict]]],
    gt_slots: Sequence[int],
    height: int,
    width: int,
    pred_names: Optional[Sequence] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame areas and spatio-temporal intersections of one video's tracks.

    pred_tracks / gt_tracks: P / G tracks, each T frames (RLE dict or None; prediction frames may
    also be uncompressed RLEs and are validated here, errors named by `pred_names[p]`: a string, or
    an object whose `what()` gives one, built only when an error is raised).
    pred_slots / gt_slots: [P] / [G] ints; only pairs of the same slot (>= 0) are intersected (the
    metric uses one slot per category); a prediction with slot -1 only gets its areas, a GT whose
    slot no prediction has gets nothing (zeros).
    Returns pred_areas [P, T] int64, gt_areas [G, T] int64 (0 where absent or not needed) and
    inter [P, G] int64: sum over frames of |P_t ∩ G_t|.
    """
    return overlaps_of_job(
        prepare_overlaps_job(
            pred_tracks, pred_slots, gt_tracks, gt_slots, height, width, pred_names
        )
    )


def prepare_overlaps_job(
    pred_tracks, pred_slots, gt_tracks, gt_slots, height, width, pred_names=None
) -> tuple:
    """The Python-object part of `video_overlaps` (same arguments): validate the frames and keep,
    per track, its present frame indices and compressed counts. The result holds only ints, lists
    and strings, so it pickles cheaply for a worker process (`overlaps_of_job` does the mask
    work)."""
    num_p, num_g = len(pred_tracks), len(gt_tracks)
    length = len(pred_tracks[0]) if num_p else (len(gt_tracks[0]) if num_g else 0)

    def namer(p: int):
        if pred_names is None:
            return lambda: f"predicted track {p}"
        return (lambda: pred_names[p]) if isinstance(pred_names[p], str) else pred_names[p].what

    with_gt = set(gt_slots)
    lone, paired = [], []
    for p in range(num_p):
        ts, counts = _present_frames(pred_tracks[p], height, width, namer(p))
        if pred_slots[p] >= 0 and pred_slots[p] in with_gt:
            paired.append((p, pred_slots[p], ts, counts))
        else:  # no GT of its category: only its areas are needed
            lone.append((p, ts, counts))
    used = {slot for _, slot, _, _ in paired}
    gts = [
        (g, gt_slots[g]) + _present_frames(gt_tracks[g], height, width, None)
        for g in range(num_g)
        if gt_slots[g] in used
    ]
    return height, width, length, num_p, num_g, lone, paired, gts


def overlaps_of_job(job: tuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pred_areas [P, T], gt_areas [G, T], inter [P, G]) of a `prepare_overlaps_job` result: the
    pycocotools work, each RLE string decoded once (see the comment above _CELLS_PER_CALL)."""
    height, width, length, num_p, num_g, lone, paired, gts = job
    pred_areas = np.zeros((num_p, length), dtype=np.int64)
    gt_areas = np.zeros((num_g, length), dtype=np.int64)
    inter = np.zeros((num_p, num_g), dtype=np.int64)
    npix = height * width
    if lone:  # one area call for every frame of the predictions without a GT of their category
        hw = [height, width]
        flat = [{"size": hw, "counts": c} for _, _, counts in lone for c in counts]
        if flat:
            where = [p * length + t for p, ts, _ in lone for t in ts]
            pred_areas.reshape(-1)[where] = mask_util.area(flat)
    if not paired:
        return pred_areas, gt_areas, inter
    used = sorted({slot for _, slot, _, _ in paired})
    # Declared sizes, one per (slot, frame): key = slot * T + t, size [H, W + key].
    sizes = {k: [[height, width + k * length + t] for t in range(length)] for k in used}
    ones = _all_ones_counts(height, width)
    per_frame = (len(paired) + len(used)) * (len(gts) + len(used))
    step = max(1, min(length, int(math.sqrt(_CELLS_PER_CALL / per_frame))))
    for t0 in range(0, length, step):
        t1 = t0 + step
        chunk = []
        for side in (paired, gts):
            rles, track, key = [], [], []
            for i, slot, ts, counts in side:
                lo, hi = bisect.bisect_left(ts, t0), bisect.bisect_left(ts, t1)
                if lo == hi:
                    continue
                size = sizes[slot]
                rles += [{"size": size[t], "counts": c} for t, c in zip(ts[lo:hi], counts[lo:hi])]
                track += [i] * (hi - lo)
                base = slot * length
                key += [base + t for t in ts[lo:hi]]
            chunk.append((rles, np.array(track, dtype=np.int64), np.array(key, dtype=np.int64)))
        (d_rle, d_track, d_key), (g_rle, g_track, g_key) = chunk
        if not d_rle:
            continue
        nd, ng = len(d_rle), len(g_rle)
        d_probe_keys = np.unique(g_key)  # all-ones masks on the prediction side measure the GTs
        g_probe_keys = np.unique(d_key)  # and on the GT side the predictions
        probe = lambda k: {"size": sizes[k // length][k % length], "counts": ones}  # noqa: E731
        o = mask_util.iou(
            d_rle + [probe(k) for k in d_probe_keys.tolist()],
            g_rle + [probe(k) for k in g_probe_keys.tolist()],
            np.zeros(ng + len(g_probe_keys), dtype=np.uint8),
        )
        a_d = np.rint(o[np.arange(nd), ng + np.searchsorted(g_probe_keys, d_key)] * npix).astype(
            np.int64
        )
        pred_areas[d_track, d_key % length] = a_d
        if ng == 0:
            continue
        a_g = np.rint(o[nd + np.searchsorted(d_probe_keys, g_key), np.arange(ng)] * npix).astype(
            np.int64
        )
        gt_areas[g_track, g_key % length] = a_g
        # Only same-(slot, frame) pairs can be > 0 (other sizes give -1, disjoint boxes 0). The
        # integer intersection is recovered exactly from IoU = I / (a + b - I): I = IoU (a + b) /
        # (1 + IoU), rounded (the float error is ~1e-16 * I).
        rows, cols = np.nonzero(o[:nd, :ng] > 0)
        if len(rows):
            iou = o[rows, cols]
            pair_inter = np.rint(iou * (a_d[rows] + a_g[cols]) / (1.0 + iou))
            np.add.at(inter, (d_track[rows], g_track[cols]), pair_inter.astype(np.int64))
    return pred_areas, gt_areas, inter


def _ious_from_overlaps(
    pred_areas: np.ndarray, gt_areas: np.ndarray, inter: np.ndarray
) -> np.ndarray:
    """Spatio-temporal IoU [P, G] = I / (|P| + |G| - I) with |.| the pixel total over all frames
    (a frame where only one track is present adds its area to the union, as in the reference's
    frame-by-frame walk); 0 where the union is 0."""
    union = pred_areas.sum(axis=1)[:, None] + gt_areas.sum(axis=1)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def track_ious(pred_rles, gt_rles) -> np.ndarray:
    """Spatio-temporal IoU [P, G] of every (prediction, GT) pair of one video: sum_t I_t /
    sum_t U_t, 0 where U = 0. pred_rles / gt_rles: lists of tracks, each a list of T RLE dicts
    or None."""
    if not pred_rles or not gt_rles:
        return np.zeros((len(pred_rles), len(gt_rles)))
    size = next(
        (s["size"] for track in list(pred_rles) + list(gt_rles) for s in track if s), [1, 1]
    )
    pred_areas, gt_areas, inter = video_overlaps(
        pred_rles, [0] * len(pred_rles), gt_rles, [0] * len(gt_rles), int(size[0]), int(size[1])
    )
    return _ious_from_overlaps(pred_areas, gt_areas, inter)


# ----------------------------------------------------------------------------------------------
# Greedy matching, batched over (video, category) groups
# ----------------------------------------------------------------------------------------------
def _last_argmax(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Index of the LAST maximum along the last axis (the reference keeps replacing on ties),
    and whether that maximum is finite (i.e. there was a candidate)."""
    g = values.shape[-1]
    idx = g - 1 - np.argmax(values[..., ::-1], axis=-1)
    found = np.take_along_axis(values, idx[..., None], axis=-1)[..., 0] > -np.inf
    return idx, found


def greedy_match(groups: List[Tuple[np.ndarray, np.ndarray, np.ndarray]], thresholds: np.ndarray):
    """COCO greedy matching for many (video, category) groups at once.

    groups: list of (ious [D, G] with predictions sorted by score, gt_ignore [A, G] bool per range,
            crowd [G] bool); every group has D >= 1 and G >= 1.
    Rule (per range a and threshold t, predictions in order): a prediction takes, among the GTs not
    yet taken (crowd GTs are never used up) with IoU >= t, the non-ignored one of highest IoU, else
    the ignored one of highest IoU; ties go to the later GT in JSON order.
    Returns per group (matched [A, T, D] bool, matched_gt_ignored [A, T, D] bool).
    """
    thr = np.minimum(thresholds, 1 - 1e-10)
    num_t = len(thr)
    outputs: List[Optional[Tuple[np.ndarray, np.ndarray]]] = [None] * len(groups)
    if not groups:
        return outputs
    num_a = groups[0][1].shape[0]
    # Bucket by padded GT count (powers of two) so one crowded video does not pad everything.
    buckets: Dict[int, List[int]] = {}
    for i, (ious, _, _) in enumerate(groups):
        buckets.setdefault(1 << int(math.ceil(math.log2(ious.shape[1]))), []).append(i)
    for gpad, members in buckets.items():
        members = sorted(members, key=lambda i: -groups[i][0].shape[0])  # D descending
        n = len(members)
        d_sizes = np.array([groups[i][0].shape[0] for i in members])
        dmax = int(d_sizes[0])
        ious = np.full((n, dmax, gpad), -1.0)  # padding never reaches a threshold
        gt_ig = np.ones((num_a, n, gpad), dtype=bool)
        crowd = np.zeros((n, gpad), dtype=bool)
        for j, i in enumerate(members):
            iou, ig, cr = groups[i]
            ious[j, : iou.shape[0], : iou.shape[1]] = iou
            gt_ig[:, j, : iou.shape[1]] = ig
            crowd[j, : iou.shape[1]] = cr
        taken = np.zeros((num_a, n, num_t, gpad), dtype=bool)
        matched = np.zeros((num_a, n, num_t, dmax), dtype=bool)
        matched_ig = np.zeros((num_a, n, num_t, dmax), dtype=bool)
        ig4 = gt_ig[:, :, None, :]  # [A, n, 1, G]
        for d in range(dmax):
            k = int(np.count_nonzero(d_sizes > d))  # groups with a d-th prediction: a prefix
            iou_d = ious[:k, d, :]  # [k, G]
            above = iou_d[:, None, :] >= thr[None, :, None]  # [k, T, G]
            free = ~taken[:, :k] | crowd[None, :k, None, :]  # [A, k, T, G]
            cand = np.where(free & above[None], iou_d[None, :, None, :], -np.inf)
            ig = ig4[:, :k]
            best_reg, found_reg = _last_argmax(np.where(ig, -np.inf, cand))
            best_ign, found_ign = _last_argmax(np.where(ig, cand, -np.inf))
            best = np.where(found_reg, best_reg, best_ign)  # [A, k, T]
            found = found_reg | found_ign
            matched[:, :k, :, d] = found
            matched_ig[:, :k, :, d] = found & ~found_reg
            a_idx, g_idx, t_idx = np.nonzero(found)
            taken[a_idx, g_idx, t_idx, best[a_idx, g_idx, t_idx]] = True
        for j, i in enumerate(members):
            dj = int(d_sizes[j])
            outputs[i] = (matched[:, j, :, :dj], matched_ig[:, j, :, :dj])
    return outputs


# ----------------------------------------------------------------------------------------------
# The metric
# ----------------------------------------------------------------------------------------------
@dataclass
class YTVISResult:
    """Scores of one evaluation. Fractions; -1 where undefined (no GT in that setting)."""

    stats: "OrderedDict[str, float]"  # the 12 numbers, STAT_NAMES order
    per_category_ap: (
        "OrderedDict[str, float]"  # AP (IoU .50:.95, all sizes, 100 dets); nan if no GT
    )
    occlusion: Optional["OrderedDict[str, float]"]  # APso..ARho (OVIS), None when not computed
    precision: np.ndarray  # [T, R, K, A, M], A = size ranges (+ occlusion bands)
    recall: np.ndarray  # [T, K, A, M]
    category_ids: List[int]
    category_names: List[str]
    range_names: List[str]
    has_annotations: bool
    num_dropped_results: int = 0

    def as_percentages(self) -> "OrderedDict[str, float]":
        """detectron2 convention: {"AP": 100x, ..., "AP-<class>": 100x}; nan where undefined."""
        out = OrderedDict()
        for name, value in list(self.stats.items()) + list((self.occlusion or {}).items()):
            out[name] = 100.0 * value if value >= 0 else float("nan")
        for name, value in self.per_category_ap.items():
            out[f"AP-{name}"] = 100.0 * value if value == value else float("nan")
        return out


def settings_ranges(occlusion: bool) -> Tuple[List[Tuple[float, float]], List[str]]:
    """(ranges, names) of the settings A: the size ranges, then the occlusion bands when
    computed."""
    ranges = [r for _, r in AREA_RANGES]
    range_names = [n for n, _ in AREA_RANGES]
    if occlusion:
        ranges += [r for _, r in OCCLUSION_BANDS]
        range_names += ["occ-" + n for n, _ in OCCLUSION_BANDS]
    return ranges, range_names


def _range_masks(values: np.ndarray, ranges) -> np.ndarray:
    """[A, N] True where values lie OUTSIDE the inclusive range (nan counts as outside)."""
    lo = np.array([r[0] for r in ranges])[:, None]
    hi = np.array([r[1] for r in ranges])[:, None]
    return ~((values[None, :] >= lo) & (values[None, :] <= hi))


def accumulate(
    det_category: np.ndarray,
    det_score: np.ndarray,
    det_rank: np.ndarray,
    det_tp: np.ndarray,
    det_fp: np.ndarray,
    num_gt_not_ignored: np.ndarray,
    category_present: np.ndarray,
    max_dets: Sequence[int] = MAX_DETS,
) -> Tuple[np.ndarray, np.ndarray]:
    """Precision [T, R, K, A, M] and recall [T, K, A, M] from the per-prediction outcomes.

    det_*: one entry per kept prediction, already ordered by (video, category, rank) — the order the
    reference concatenates them in; det_tp / det_fp: [A, T, N] bool; num_gt_not_ignored: [K, A];
    category_present: [K] bool, whether any GT or prediction of the category exists.
    """
    num_a, num_t = det_tp.shape[0], det_tp.shape[1]
    num_k, num_r, num_m = len(num_gt_not_ignored), len(RECALL_THRESHOLDS), len(max_dets)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    # One stable sort: category first, then score descending; ties keep the concatenation order.
    order = np.lexsort((-det_score, det_category))
    cats_sorted = det_category[order]
    starts = np.searchsorted(cats_sorted, np.arange(num_k), side="left")
    ends = np.searchsorted(cats_sorted, np.arange(num_k), side="right")
    for k in range(num_k):
        if not category_present[k]:
            continue
        seg = order[starts[k] : ends[k]]
        for m, max_det in enumerate(max_dets):
            sel = seg[det_rank[seg] < max_det]
            nd = len(sel)
            for a in range(num_a):
                npig = num_gt_not_ignored[k, a]
                if npig == 0:
                    continue
                tp_sum = np.cumsum(det_tp[a][:, sel], axis=1).astype(np.float64)  # [T, nd]
                fp_sum = np.cumsum(det_fp[a][:, sel], axis=1).astype(np.float64)
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + _EPS)
                recall[:, k, a, m] = rc[:, -1] if nd else 0
                if nd == 0:
                    precision[:, :, k, a, m] = 0.0
                    continue
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # non-increasing
                # The reference's searchsorted(rc[t], RECALL_THRESHOLDS) for all t at once, in exact
                # integers: rc = tp / npig, so "rc >= r" means tp >= the smallest v with v / npig >=
                # r
                # (the same float division), and rows offset by t * (npig + 2) stay sorted.
                need = np.searchsorted(np.arange(npig + 1) / npig, RECALL_THRESHOLDS, side="left")
                offset = np.arange(num_t)[:, None] * (npig + 2)
                inds = np.searchsorted(
                    (tp_sum + offset).ravel(), (need[None, :] + offset).ravel(), side="left"
                )
                inds = inds.reshape(num_t, num_r) - np.arange(num_t)[:, None] * nd
                ok = inds < nd
                q = np.zeros((num_t, num_r))
                q[ok] = pr[np.nonzero(ok)[0], inds[ok]]
                precision[:, :, k, a, m] = q
    return precision, recall


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return -1.0 if defined.size == 0 else float(np.mean(defined))


def summarize(
    precision: np.ndarray, recall: np.ndarray, range_names: Sequence[str], occlusion: bool = False
):
    """The 12 numbers (and the OVIS occlusion ones) from precision/recall, as the reference
    prints."""

    def one(ap: bool, iou=None, area="all", max_det=100) -> float:
        a = list(range_names).index(area)
        m = list(MAX_DETS).index(max_det)
        s = precision if ap else recall
        if iou is not None:
            s = s[np.where(iou == IOU_THRESHOLDS)[0]]
        s = s[:, :, :, a, m] if ap else s[:, :, a, m]
        return _mean_defined(s)

    stats = OrderedDict(
        [
            ("AP", one(True)),
            ("AP50", one(True, iou=0.5)),
            ("AP75", one(True, iou=0.75)),
            ("APs", one(True, area="small")),
            ("APm", one(True, area="medium")),
            ("APl", one(True, area="large")),
            ("AR1", one(False, max_det=1)),
            ("AR10", one(False, max_det=10)),
            ("AR100", one(False, max_det=100)),
            ("ARs", one(False, area="small")),
            ("ARm", one(False, area="medium")),
            ("ARl", one(False, area="large")),
        ]
    )
    occ = None
    if occlusion:
        occ = OrderedDict()
        for prefix, ap in (("AP", True), ("AR", False)):
            for band, short in zip(("occ-light", "occ-medium", "occ-heavy"), ("so", "mo", "ho")):
                occ[prefix + short] = one(ap, area=band)
    return stats, occ


def per_category_ap(
    precision: np.ndarray, category_names: Sequence[str]
) -> "OrderedDict[str, float]":
    """AP per category (IoU .50:.95, all sizes, 100 dets), nan for categories without GT."""
    out = OrderedDict()
    for k, name in enumerate(category_names):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[name] = float(np.mean(p)) if p.size else float("nan")
    return out


def evaluate_ytvis(
    gt_json: dict,
    results: Sequence[dict],
    ovis: Optional[bool] = None,
    workers: int = 1,
    worker: Optional["Worker"] = None,
) -> YTVISResult:
    """Score a results list (submission format) against a YouTube-VIS / OVIS GT JSON dict.

    gt_json: {videos, categories, annotations (may be missing/None)}; results: list of
    {video_id, category_id (dataset id), score, segmentations: [compressed RLE or None] * T}.
    ovis: compute the occlusion APs/ARs; None = when the GT carries per-frame `occlusion` labels.
    workers: 2 = share the mask work with a helper process (about half of the videos each);
    `worker`: a `Worker` started earlier to use for it (best: started before the files were parsed,
    see `Worker`); with workers=2 and none given, one is forked for this call (needs os.fork, else
    everything runs here). The numbers do not depend on either.
    """
    own = None
    if worker is None and workers > 1 and hasattr(os, "fork"):
        worker = own = Worker()
    try:
        with gc_paused():
            gt = load_ground_truth(gt_json)
            preds, dropped = load_predictions(gt, results)
            occlusion = gt.has_occlusion_labels if ovis is None else bool(ovis)
            if occlusion and not gt.has_occlusion_labels and gt.has_annotations:
                logger.warning(
                    "OVIS occlusion metrics requested but the GT has no 'occlusion' labels: they "
                    "are -1."
                )
            elif occlusion:
                warn_unlabelled_tracks(gt)
            if not gt.has_annotations:
                logger.warning(
                    "The GT JSON has no annotations: no local score is possible (all numbers are "
                    "-1)."
                )
            return _evaluate_parsed(gt, preds, dropped, occlusion, worker)
    finally:
        if own is not None:
            own.close()


@contextlib.contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector (restored on exit). A parsed results file is millions
    of small dicts and strings, and every full collection walks all of them (and, after a fork,
    copies every page it touches); the metric creates no reference cycles worth collecting."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Worker:
    """A helper process for the mask work: a fork of this process that runs `overlaps_of_job` on
    the jobs it is sent through a pipe and sends the results back (pickled).

    Start it early — tools/evaluate.py does so before parsing the JSON files — so that it shares
    only the imported modules with its parent: a process forked after the parse would keep every
    page of the parsed files mapped, and each page the parent then touches would be copied. The
    jobs carry only ints and strings, never the parsed objects. Use as a context manager, or
    call close(). Linux/macOS only (needs os.fork).
    """

    def __init__(self):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the caller's code
            status = 1
            try:
                os.close(to_child_w)
                os.close(from_child_r)
                gc.disable()  # its objects are short-lived; see gc_paused
                Worker._serve(os.fdopen(to_child_r, "rb"), os.fdopen(from_child_w, "wb"))
                status = 0
            finally:
                os._exit(status)
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid = pid
        self._to = os.fdopen(to_child_w, "wb")
        self._from = os.fdopen(from_child_r, "rb")

    @staticmethod
    def _send(f, message) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        f.write(len(data).to_bytes(8, "little"))
        f.write(data)
        f.flush()

    @staticmethod
    def _receive(f):
        head = f.read(8)
        if len(head) < 8:
            return None  # the other side is gone
        return pickle.loads(f.read(int.from_bytes(head, "little")))

    @staticmethod
    def _serve(inbox, outbox) -> None:
        results, error = [], None
        while True:
            message = Worker._receive(inbox)
            if message is None or message[0] == "stop":
                return
            if message[0] == "jobs" and error is None:
                try:
                    results += [overlaps_of_job(job) for job in message[1]]
                except Exception as e:  # reported to the parent with the results
                    error = f"{type(e).__name__}: {e}"
            elif message[0] == "end":
                Worker._send(outbox, ("error", error) if error else ("results", results))
                results, error = [], None

    def submit(self, jobs: list) -> None:
        """Queue jobs (`prepare_overlaps_job` results); the worker starts on them at once. Blocks
        until the worker has read them (it reads between jobs): see `feed` to keep working
        meanwhile."""
        self._send(self._to, ("jobs", jobs))

    def feed(self, batches, between: Sequence, work) -> list:
        """Send `batches` (an iterable of job lists, made lazily) while running `work(x)` for each x
        of `between` here, never waiting on the worker: a writer thread does the blocking writes,
        and at most two batches wait in memory. Returns [work(x) for x in between]; the worker's
        results come from `collect()`."""
        outbox: "queue.Queue" = queue.Queue(maxsize=2)
        failure = []

        def write():
            try:
                for data in iter(outbox.get, None):
                    self._to.write(data)
                    self._to.flush()
            except BaseException as e:  # reported below, after the join
                failure.append(e)
                for _ in iter(outbox.get, None):  # keep draining so that the producer never blocks
                    pass

        def framed(jobs) -> bytes:
            data = pickle.dumps(("jobs", jobs), protocol=pickle.HIGHEST_PROTOCOL)
            return len(data).to_bytes(8, "little") + data

        writer = threading.Thread(target=write, name="ytvis-worker-feed", daemon=True)
        writer.start()
        batches = iter(batches)
        pending = True
        out = []
        try:
            for x in between:
                while pending and not outbox.full():
                    jobs = next(batches, None)
                    if jobs is None:
                        pending = False
                    else:
                        outbox.put(framed(jobs))
                out.append(work(x))
            for jobs in batches if pending else ():
                outbox.put(framed(jobs))
        finally:
            outbox.put(None)
            writer.join()
        if failure:
            raise RuntimeError(
                f"could not send jobs to the worker process {self.pid}: {failure[0]}"
            )
        return out

    def collect(self) -> list:
        """The results of every job submitted since the last collect, in order."""
        self._send(self._to, ("end",))
        reply = self._receive(self._from)
        if reply is None:
            raise RuntimeError(f"the worker process {self.pid} died")
        if reply[0] == "error":
            raise RuntimeError(f"the worker process {self.pid} failed: {reply[1]}")
        return reply[1]

    def close(self) -> None:
        if self.pid is None:
            return
        try:
            self._send(self._to, ("stop",))
        except OSError:
            pass
        for f in (self._to, self._from):
            try:
                f.close()
            except OSError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.pid = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _split_by_cost(items: Sequence, costs: Sequence[float], shares: Sequence[float]) -> List[list]:
    """Items into len(shares) lists whose total costs are about in those proportions (largest item
    first, each to the list furthest below its share)."""
    out: List[list] = [[] for _ in shares]
    load = [0.0] * len(shares)
    for i in sorted(range(len(items)), key=lambda i: -costs[i]):
        j = min(range(len(shares)), key=lambda j: (load[j] + costs[i]) / shares[j])
        out[j].append(items[i])
        load[j] += costs[i]
    return out


def _evaluate_parsed(
    gt: GroundTruth,
    preds: List[PredTrack],
    dropped: int,
    occlusion: bool,
    worker: Optional[Worker] = None,
) -> YTVISResult:
    ranges, range_names = settings_ranges(occlusion)
    num_areas = len(AREA_RANGES)
    num_a, num_k = len(ranges), len(gt.category_ids)
    max_det = MAX_DETS[-1]

    # GT per (video, category) in JSON order; range-ignore flags per GT.
    gt_mean_area = np.array([g.mean_area for g in gt.tracks], dtype=np.float64)
    gt_occ = np.array([g.occlusion for g in gt.tracks], dtype=np.float64)
    gt_crowd = np.array([g.iscrowd for g in gt.tracks], dtype=bool)
    gt_ignore = _range_masks(gt_mean_area, ranges[:num_areas])
    if occlusion:  # a track without occlusion label (nan) is outside every band: ignored there
        gt_ignore = np.concatenate([gt_ignore, _range_masks(gt_occ, ranges[num_areas:])])
    gt_ignore |= gt_crowd[None, :]  # [A, num_gt]
    num_gt_not_ignored = np.zeros((num_k, num_a), dtype=np.int64)
    category_present = np.zeros(num_k, dtype=bool)
    gt_by_group: Dict[Tuple[int, int], List[int]] = {}
    gt_by_video: Dict[int, List[int]] = {}
    for i, g in enumerate(gt.tracks):
        gt_by_group.setdefault((g.video_index, g.category_index), []).append(i)
        gt_by_video.setdefault(g.video_index, []).append(i)
        num_gt_not_ignored[g.category_index] += ~gt_ignore[:, i]
        category_present[g.category_index] = True

    # Predictions per (video, category): stable sort by score, keep the top `max_det`.
    pred_by_group: Dict[Tuple[int, int], List[int]] = {}
    for i, p in enumerate(preds):
        pred_by_group.setdefault((p.video_index, p.category_index), []).append(i)
    for key, members in pred_by_group.items():
        scores = np.array([preds[i].score for i in members])
        order = np.argsort(-scores, kind="mergesort")[:max_det]
        pred_by_group[key] = [members[j] for j in order]
        category_present[key[1]] = True

    # Kept predictions in (video, category, rank) order: the reference's concatenation order.
    keys_by_video: Dict[int, List[Tuple[int, int]]] = {}
    for key in sorted(pred_by_group):
        keys_by_video.setdefault(key[0], []).append(key)

    def job_of(vi: int) -> tuple:
        """The video's mask work: its kept predictions (in key order) against its GTs, one slot
        per category present on both sides."""
        keys = keys_by_video[vi]
        pred_idx = [i for key in keys for i in pred_by_group[key]]
        gt_idx = gt_by_video.get(vi, [])
        slot = {key[1]: k for k, key in enumerate(keys) if key in gt_by_group}
        return prepare_overlaps_job(
            [preds[i].segms for i in pred_idx],
            [slot.get(preds[i].category_index, -1) for i in pred_idx],
            [gt.tracks[i].rles for i in gt_idx],
            [slot.get(gt.tracks[i].category_index, -1) for i in gt_idx],
            gt.heights[vi],
            gt.widths[vi],
            pred_names=[preds[i] for i in pred_idx],
        )

    def finish_video(vi: int, overlaps) -> tuple:
        """(mean areas of the video's kept predictions, IoU matrix of each group with GT)."""
        pred_areas, gt_areas, inter = overlaps
        # Mean of the non-zero frame areas (exact: integer sums are exact in float64).
        mean_area = pred_areas.sum(axis=1) / np.maximum(np.count_nonzero(pred_areas, axis=1), 1)
        ious = _ious_from_overlaps(pred_areas, gt_areas, inter)
        group_ious, p0 = [], 0
        gt_pos = {i: j for j, i in enumerate(gt_by_video.get(vi, []))}
        for key in keys_by_video[vi]:
            d = len(pred_by_group[key])
            if key in gt_by_group:
                group_ious.append(ious[p0 : p0 + d][:, [gt_pos[i] for i in gt_by_group[key]]])
            p0 += d
        return mean_area, group_ious

    videos = list(keys_by_video)
    per_video = {}
    if worker is not None and len(videos) > 1:
        # Cost of a video ~ the frames whose masks get decoded. The worker gets 60%: this process
        # also prepares the worker's jobs (the Python-object part), and matches and accumulates
        # afterwards.
        costs = [
            gt.lengths[vi]
            * (sum(len(pred_by_group[k]) for k in keys_by_video[vi]) + len(gt_by_video.get(vi, ())))
            for vi in videos
        ]
        theirs, mine = _split_by_cost(videos, costs, (0.6, 0.4))
        theirs.sort()
        size = max(
            1, len(theirs) // 16
        )  # small messages: bounded memory, and the worker starts early
        batches = ([job_of(vi) for vi in theirs[b : b + size]] for b in range(0, len(theirs), size))
        mine_done = worker.feed(
            batches, mine, lambda vi: finish_video(vi, overlaps_of_job(job_of(vi)))
        )
        per_video.update(zip(mine, mine_done))
        for vi, overlaps in zip(theirs, worker.collect()):
            per_video[vi] = finish_video(vi, overlaps)
    else:
        for vi in videos:
            per_video[vi] = finish_video(vi, overlaps_of_job(job_of(vi)))

    det_category, det_score, det_rank, det_area = [], [], [], []
    group_slices: Dict[Tuple[int, int], Tuple[int, int]] = {}
    groups, group_keys = [], []
    for vi, keys in keys_by_video.items():
        mean_area, group_ious = per_video[vi]
        det_area.append(mean_area)
        ious = iter(group_ious)
        for key in keys:
            members = pred_by_group[key]
            start = len(det_score)
            group_slices[key] = (start, start + len(members))
            det_category += [key[1]] * len(members)
            det_rank += range(len(members))
            det_score += [preds[i].score for i in members]
            if key in gt_by_group:
                gts = gt_by_group[key]
                groups.append((next(ious), gt_ignore[:, gts], gt_crowd[gts]))
                group_keys.append(key)
    num_det = len(det_score)
    det_category = np.array(det_category, dtype=np.int64)
    det_score = np.array(det_score, dtype=np.float64)
    det_rank = np.array(det_rank, dtype=np.int64)
    det_area = np.concatenate(det_area) if det_area else np.zeros(0)
    matches = greedy_match(groups, IOU_THRESHOLDS)

    num_t = len(IOU_THRESHOLDS)
    det_matched = np.zeros((num_a, num_t, num_det), dtype=bool)
    det_matched_ig = np.zeros((num_a, num_t, num_det), dtype=bool)
    for key, (matched, matched_ig) in zip(group_keys, matches):
        s, e = group_slices[key]
        det_matched[:, :, s:e] = matched
        det_matched_ig[:, :, s:e] = matched_ig
    # An unmatched prediction is excused (ignored) only by the size range, never by an occlusion
    # band: predictions carry no occlusion score (official OVIS scorer).
    det_out = np.zeros((num_a, num_det), dtype=bool)
    det_out[:num_areas] = _range_masks(det_area, ranges[:num_areas])
    det_ignore = det_matched_ig | (~det_matched & det_out[:, None, :])
    det_tp = det_matched & ~det_ignore
    det_fp = ~det_matched & ~det_ignore

    precision, recall = accumulate(
        det_category, det_score, det_rank, det_tp, det_fp, num_gt_not_ignored, category_present
    )
    return make_result(gt, precision, recall, range_names, occlusion, dropped)


def make_result(
    gt: GroundTruth,
    precision: np.ndarray,
    recall: np.ndarray,
    range_names: Sequence[str],
    occlusion: bool,
    dropped: int,
) -> YTVISResult:
    """The summary numbers and the result object from precision [T, R, K, A, M] / recall [T, K, A,
    M]."""
    stats, occ = summarize(precision, recall, range_names, occlusion)
    return YTVISResult(
        stats=stats,
        per_category_ap=per_category_ap(precision, gt.category_names),
        occlusion=occ,
        precision=precision,
        recall=recall,
        category_ids=list(gt.category_ids),
        category_names=list(gt.category_names),
        range_names=list(range_names),
        has_annotations=gt.has_annotations,
        num_dropped_results=dropped,
    )


def _pipe_table(headers: Sequence[str], rows: Sequence[Sequence[str]], center: bool = False) -> str:
    """A Markdown pipe table of strings (what detectron2 logs print), columns padded to one width.
    Written here rather than with tabulate: the command imports numpy and pycocotools only."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    pad = (lambda text, w: text.center(w)) if center else (lambda text, w: text.ljust(w))  # noqa: E731

    def line(cells):
        return "| " + " | ".join(pad(str(c), max(w, 3)) for c, w in zip(cells, widths)) + " |"

    sep = (
        "|"
        + "|".join(
            (":" + "-" * max(w, 3) + ":") if center else "-" * (max(w, 3) + 2) for w in widths
        )
        + "|"
    )
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def format_results_table(result: YTVISResult) -> str:
    """Human-readable summary: the 12 numbers (x100), OVIS numbers, and per-category AP."""
    pct = result.as_percentages()
    main = [(k, pct[k]) for k in STAT_NAMES]
    if result.occlusion is not None:
        main += [(k, pct[k]) for k in OCCLUSION_STAT_NAMES]
    lines = [_pipe_table([k for k, _ in main], [[f"{v:.3f}" for _, v in main]], center=True)]
    cats = [(n, pct[f"AP-{n}"]) for n in result.category_names]
    if cats:
        cols = 3
        rows = []
        for i in range(0, len(cats), cols):
            row = []
            for n, v in cats[i : i + cols]:
                row += [n, f"{v:.3f}"]
            rows.append(row + [""] * (2 * min(cols, len(cats)) - len(row)))
        lines.append(_pipe_table(["category", "AP"] * min(cols, len(cats)), rows))
    return "\n\n".join(lines)
