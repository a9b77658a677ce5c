"""The YouTube-VIS / OVIS video instance segmentation metric, vectorised.

Our own implementation of the scorer described in `shared/specs/ytvis_evaluation.md` (the YouTube-VIS
fork of the COCO API that the CodaLab servers run). It gives the same numbers as that scorer, quirks
included (stable sorts, float64 machine-epsilon in the precision, 101 recall points, GT sizes taken from
the GT `areas`, 128²/256² size ranges, crowd GTs), with these deliberate differences:

* a prediction whose frame count differs from its video, or whose masks are not at the video's
  resolution, raises a ValueError naming the video (the reference silently truncates / scores 0);
* a result for a video that is not in the GT raises a ValueError naming the video;
* an empty results list scores 0 (the reference crashes on it);
* a GT annotation whose `id` is 0 is treated like any other (the reference, which stores matched GT
  ids in an array where 0 means "unmatched", would count a prediction matched to it as a false
  positive). YouTube-VIS and OVIS ids start at 1, so real files are unaffected.

How it is vectorised:
* track IoUs: per video and frame, one pycocotools call gives the IoUs of all present
  (prediction, GT) pairs (exact RLE intersections, pairs with disjoint boxes skipped); the integer
  intersections are recovered exactly from them and summed over frames with numpy. Unions follow
  from the per-track pixel totals: U = |P| + |G| - I, because a frame where only one track is
  present adds that track's area and an all-zero mask adds nothing, exactly as the frame-by-frame
  walk of the reference does.
* matching: the greedy COCO matching is sequential in the predictions (highest score first), so the
  loop runs over the prediction rank d (at most 100 steps) and each step handles every
  (video, category, size range, IoU threshold, GT) at once with numpy.
* accumulation: one stable lexsort of all kept predictions, then cumulative sums per category.

Public entry points: `evaluate_ytvis(gt_json, results)` and `format_results_table(result)`.
The straightforward per-pair loop implementation used to cross-check this one lives in
`vis_zoo.evaluation.ytvis_loop`.
"""
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

logger = logging.getLogger(__name__)

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
    "track_ious",
    "track_occlusion_score",
    "greedy_match",
    "accumulate",
    "per_category_ap",
    "evaluate_ytvis",
    "summarize",
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
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
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
    list's order, the tie-break order of the reference's stable sorts."""

    video_index: int
    category_index: int
    score: float
    rles: List[Optional[dict]]


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


def _frame_score(label, ann_id) -> Optional[float]:
    """OVIS per-frame occlusion label -> score (none 0, slight 0.25, severe 0.75); None = unlabelled."""
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
        raise ValueError(f"{what}: mask size {size} does not match the video size [{height}, {width}]")


def _gt_frame_to_rle(segm, height: int, width: int, what: str) -> Optional[dict]:
    """A GT frame segmentation (polygons, uncompressed or compressed RLE, or null) -> RLE or None."""
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


def load_ground_truth(gt_json: dict) -> GroundTruth:
    """Parse and validate a YouTube-VIS / OVIS GT JSON dict (annotations may be missing or None)."""
    if not isinstance(gt_json, dict):
        raise ValueError(f"GT JSON must be a dict with 'videos' and 'categories', got {type(gt_json).__name__}")
    for key in ("videos", "categories"):
        if not isinstance(gt_json.get(key), list):
            raise ValueError(f"GT JSON has no '{key}' list")
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
        if vid not in gt.video_index or ann.get("category_id") not in gt.category_index:
            # The reference only loads annotations of listed videos and categories.
            skipped += 1
            continue
        vi = gt.video_index[vid]
        h, w, length = heights[vi], widths[vi], lengths[vi]
        segms = ann.get("segmentations")
        what = f"GT annotation {ann_id} of video {vid}"
        if not isinstance(segms, list) or len(segms) != length:
            n = len(segms) if isinstance(segms, list) else None
            raise ValueError(f"{what}: 'segmentations' has {n} frames, the video has {length}")
        rles = [_gt_frame_to_rle(s, h, w, f"{what}, frame {t}") for t, s in enumerate(segms)]
        if "areas" in ann and ann["areas"] is not None:
            nonzero = [a for a in ann["areas"] if a]
        else:  # convenience for hand-made files: the reference needs `areas`; take the mask areas
            nonzero = [a for a in (int(mask_util.area(r)) if r else 0 for r in rles) if a]
        mean_area = float(np.array(nonzero).mean()) if nonzero else 0.0
        occ_labels = ann.get("occlusion")
        if occ_labels:
            gt.has_occlusion_labels = True
        gt.tracks.append(
            GTTrack(
                ann_id=ann_id,
                video_index=vi,
                category_index=gt.category_index[ann["category_id"]],
                iscrowd=bool(ann.get("iscrowd", 0)),
                mean_area=mean_area,
                occlusion=track_occlusion_score(occ_labels, ann_id),
                rles=rles,
            )
        )
    if skipped:
        logger.warning("Skipped %d GT annotation(s) of a video or category not listed in the GT JSON.", skipped)
    return gt


def _pred_frames_to_rles(segms: Sequence, height: int, width: int, what: str) -> List[Optional[dict]]:
    """A prediction's per-frame segmentations -> RLE dicts / None, checking every mask's size."""
    rles: List[Optional[dict]] = []
    for t, segm in enumerate(segms):
        if not segm:
            rles.append(None)
            continue
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
            raise ValueError(f"{what}, frame {t}: mask size {list(size)} does not match the video size "
                             f"[{height}, {width}]")
        rles.append(segm)
    return rles


def load_predictions(gt: GroundTruth, results: Sequence[dict]) -> Tuple[List[PredTrack], int]:
    """Validate the results list against the GT. Returns (tracks of known categories, number dropped).

    Raises ValueError for a result whose video is not in the GT, whose frame count differs from the
    video's, whose masks are not at the video's resolution, or that misses a key / has a bad score.
    """
    if results is None:
        results = []
    if not isinstance(results, (list, tuple)):
        raise ValueError(f"results must be a list of track entries, got {type(results).__name__}")
    tracks, dropped = [], 0
    for i, entry in enumerate(results):
        if not isinstance(entry, dict):
            raise ValueError(f"result #{i} is a {type(entry).__name__}, expected a dict")
        for key in ("video_id", "category_id", "score", "segmentations"):
            if key not in entry:
                raise ValueError(f"result #{i} (video {entry.get('video_id', '?')}): missing key '{key}'")
        vid = entry["video_id"]
        if vid not in gt.video_index:
            raise ValueError(f"result #{i}: video_id {vid!r} is not a video of the GT JSON")
        try:
            score = float(entry["score"])
        except (TypeError, ValueError):
            raise ValueError(f"result #{i} (video {vid}): score {entry['score']!r} is not a number") from None
        if math.isnan(score):
            raise ValueError(f"result #{i} (video {vid}): score is NaN")
        vi = gt.video_index[vid]
        h, w, length = gt.heights[vi], gt.widths[vi], gt.lengths[vi]
        segms = entry["segmentations"]
        if not isinstance(segms, (list, tuple)) or len(segms) != length:
            n = len(segms) if isinstance(segms, (list, tuple)) else None
            raise ValueError(
                f"result #{i} (video {vid}): prediction has {n} frames, the video has {length}"
            )
        cat = entry["category_id"]
        if cat not in gt.category_index:
            dropped += 1  # the reference drops categories that are not in the GT
            continue
        what = f"result #{i} (video {vid})"
        rles = _pred_frames_to_rles(segms, h, w, what)
        tracks.append(PredTrack(vi, gt.category_index[cat], score, rles))
    if dropped:
        logger.info("Dropped %d result(s) whose category_id is not a GT category.", dropped)
    return tracks, dropped


# ----------------------------------------------------------------------------------------------
# Track IoUs (vectorised)
# ----------------------------------------------------------------------------------------------
def _frame_areas(tracks: Sequence[Sequence[Optional[dict]]], length: int) -> np.ndarray:
    """[N, T] pixel area of every track's mask in every frame (0 where absent), one pycocotools call."""
    areas = np.zeros((len(tracks), length), dtype=np.int64)
    flat = [rle for track in tracks for rle in track]  # index n * length + t
    present = [i for i, rle in enumerate(flat) if rle]
    if present:
        areas.reshape(-1)[present] = mask_util.area([flat[i] for i in present])
    return areas


def track_intersections(pred_rles, gt_rles, pred_areas=None, gt_areas=None) -> np.ndarray:
    """Spatio-temporal intersections [P, G] (pixels summed over frames) of every pair of tracks.

    pred_rles / gt_rles: lists of tracks, each a list of T RLE dicts or None.
    pred_areas / gt_areas: their [P, T] / [G, T] per-frame areas (computed when None).

    One pycocotools call per frame gives the IoUs of all present pairs (its RLE intersection is exact
    and skips pairs whose boxes do not overlap); the integer intersection is recovered exactly from
    IoU = I / (a + b - I) as I = IoU * (a + b) / (1 + IoU), rounded: the float error is ~1e-16 * I.
    """
    num_pred, num_gt = len(pred_rles), len(gt_rles)
    inter = np.zeros((num_pred, num_gt), dtype=np.float64)
    if num_pred == 0 or num_gt == 0:
        return inter
    length = len(gt_rles[0])
    if pred_areas is None:
        pred_areas = _frame_areas(pred_rles, length)
    if gt_areas is None:
        gt_areas = _frame_areas(gt_rles, length)
    for t in range(length):
        p_idx = np.flatnonzero(pred_areas[:, t])
        g_idx = np.flatnonzero(gt_areas[:, t])
        if len(p_idx) == 0 or len(g_idx) == 0:
            continue  # an absent or empty mask intersects nothing
        iou = mask_util.iou(
            [pred_rles[i][t] for i in p_idx], [gt_rles[j][t] for j in g_idx], np.zeros(len(g_idx), np.uint8)
        )
        sums = pred_areas[p_idx, t][:, None] + gt_areas[g_idx, t][None, :]
        inter[np.ix_(p_idx, g_idx)] += np.rint(iou * sums / (1.0 + iou))
    return inter


def track_ious(pred_rles, gt_rles, pred_areas=None, gt_areas=None) -> np.ndarray:
    """Spatio-temporal IoU [P, G]: sum_t I_t / sum_t U_t over the video's frames, 0 where U = 0.

    U = |P| + |G| - I with |.| the pixel total over all frames: a frame where only one track is
    present adds its area to the union, as in the reference's frame-by-frame walk.
    """
    length = len(gt_rles[0]) if gt_rles else (len(pred_rles[0]) if pred_rles else 0)
    if pred_areas is None:
        pred_areas = _frame_areas(pred_rles, length)
    if gt_areas is None:
        gt_areas = _frame_areas(gt_rles, length)
    inter = track_intersections(pred_rles, gt_rles, pred_areas, gt_areas)
    pred_total = pred_areas.sum(axis=1).astype(np.float64)
    gt_total = gt_areas.sum(axis=1).astype(np.float64)
    union = pred_total[:, None] + gt_total[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


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
    per_category_ap: "OrderedDict[str, float]"  # AP (IoU .50:.95, all sizes, 100 dets); nan if no GT
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
                for t in range(num_t):
                    inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    q = np.zeros(num_r)
                    ok = inds < nd
                    q[ok] = pr[t, inds[ok]]
                    precision[t, :, k, a, m] = q
    return precision, recall


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return -1.0 if defined.size == 0 else float(np.mean(defined))


def summarize(
    precision: np.ndarray, recall: np.ndarray, range_names: Sequence[str], occlusion: bool = False
):
    """The 12 numbers (and the OVIS occlusion ones) from precision/recall, as the reference prints."""

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


def per_category_ap(precision: np.ndarray, category_names: Sequence[str]) -> "OrderedDict[str, float]":
    """AP per category (IoU .50:.95, all sizes, 100 dets), nan for categories without GT."""
    out = OrderedDict()
    for k, name in enumerate(category_names):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[name] = float(np.mean(p)) if p.size else float("nan")
    return out


def evaluate_ytvis(gt_json: dict, results: Sequence[dict], ovis: Optional[bool] = None) -> YTVISResult:
    """Score a results list (submission format) against a YouTube-VIS / OVIS GT JSON dict.

    gt_json: {videos, categories, annotations (may be missing/None)}; results: list of
    {video_id, category_id (dataset id), score, segmentations: [compressed RLE or None] * T}.
    ovis: compute the occlusion APs/ARs; None = when the GT carries per-frame `occlusion` labels.
    """
    gt = load_ground_truth(gt_json)
    preds, dropped = load_predictions(gt, results)
    occlusion = gt.has_occlusion_labels if ovis is None else bool(ovis)
    if occlusion and not gt.has_occlusion_labels and gt.has_annotations:
        logger.warning("OVIS occlusion metrics requested but the GT has no 'occlusion' labels: they are -1.")
    if not gt.has_annotations:
        logger.warning("The GT JSON has no annotations: no local score is possible (all numbers are -1).")
    return _evaluate_parsed(gt, preds, dropped, occlusion)


def _evaluate_parsed(gt: GroundTruth, preds: List[PredTrack], dropped: int, occlusion: bool) -> YTVISResult:
    ranges = [r for _, r in AREA_RANGES]
    range_names = [n for n, _ in AREA_RANGES]
    if occlusion:
        ranges += [r for _, r in OCCLUSION_BANDS]
        range_names += ["occ-" + n for n, _ in OCCLUSION_BANDS]
    num_areas = len(AREA_RANGES)
    num_a, num_k = len(ranges), len(gt.category_ids)
    max_det = MAX_DETS[-1]

    # GT per (video, category) in JSON order; range-ignore flags per GT.
    gt_mean_area = np.array([g.mean_area for g in gt.tracks], dtype=np.float64)
    gt_occ = np.array([g.occlusion for g in gt.tracks], dtype=np.float64)
    gt_crowd = np.array([g.iscrowd for g in gt.tracks], dtype=bool)
    gt_ignore = _range_masks(gt_mean_area, ranges[:num_areas])
    if occlusion:
        gt_ignore = np.concatenate([gt_ignore, _range_masks(gt_occ, ranges[num_areas:])])
    gt_ignore |= gt_crowd[None, :]  # [A, num_gt]
    num_gt_not_ignored = np.zeros((num_k, num_a), dtype=np.int64)
    category_present = np.zeros(num_k, dtype=bool)
    gt_by_group: Dict[Tuple[int, int], List[int]] = {}
    for i, g in enumerate(gt.tracks):
        gt_by_group.setdefault((g.video_index, g.category_index), []).append(i)
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
    det_category, det_score, det_rank, det_area = [], [], [], []
    group_slices: Dict[Tuple[int, int], Tuple[int, int]] = {}
    groups, group_keys, group_occ = [], [], []
    for vi, keys in keys_by_video.items():
        start = len(det_score)
        pred_idx = []
        for key in keys:
            members = pred_by_group[key]
            group_slices[key] = (start + len(pred_idx), start + len(pred_idx) + len(members))
            pred_idx += members
            det_category += [key[1]] * len(members)
            det_rank += range(len(members))
        det_score += [preds[i].score for i in pred_idx]
        pred_areas = _frame_areas([preds[i].rles for i in pred_idx], gt.lengths[vi])  # [P, T]
        # Mean of the non-zero frame areas (exact: integer sums are exact in float64).
        nonzero = np.count_nonzero(pred_areas, axis=1)
        det_area += list(pred_areas.sum(axis=1) / np.maximum(nonzero, 1))

        # Track IoUs for the groups that have GT (the others' predictions are all unmatched).
        with_gt = [k for k in keys if k in gt_by_group]
        if not with_gt:
            continue
        rows = [j for k in with_gt for j in range(group_slices[k][0] - start, group_slices[k][1] - start)]
        gt_idx = [i for k in with_gt for i in gt_by_group[k]]
        gt_areas = _frame_areas([gt.tracks[i].rles for i in gt_idx], gt.lengths[vi])
        # Cross-category pairs are computed too (one call per frame) and discarded below.
        ious = track_ious([preds[pred_idx[j]].rles for j in rows], [gt.tracks[i].rles for i in gt_idx],
                          pred_areas[rows], gt_areas)
        p0 = g0 = 0
        for k in with_gt:
            gts = gt_by_group[k]
            d, g = len(pred_by_group[k]), len(gts)
            sub = ious[p0 : p0 + d, g0 : g0 + g]
            p0 += d
            g0 += g
            groups.append((sub, gt_ignore[:, gts], gt_crowd[gts]))
            group_keys.append(k)
            if occlusion:
                # A prediction's occlusion score is that of the GT it overlaps most (same video and
                # category); with no overlap it has none and is never excused from a band.
                best = np.argmax(sub, axis=1)
                has = sub[np.arange(d), best] > 0
                group_occ.append(np.where(has, gt_occ[np.array(gts)[best]], np.nan))
    num_det = len(det_score)
    det_category = np.array(det_category, dtype=np.int64)
    det_score = np.array(det_score, dtype=np.float64)
    det_rank = np.array(det_rank, dtype=np.int64)
    det_occ = np.full(num_det, np.nan)
    for key, occ in zip(group_keys, group_occ):
        s, e = group_slices[key]
        det_occ[s:e] = occ
    matches = greedy_match(groups, IOU_THRESHOLDS)

    num_t = len(IOU_THRESHOLDS)
    det_matched = np.zeros((num_a, num_t, num_det), dtype=bool)
    det_matched_ig = np.zeros((num_a, num_t, num_det), dtype=bool)
    for key, (matched, matched_ig) in zip(group_keys, matches):
        s, e = group_slices[key]
        det_matched[:, :, s:e] = matched
        det_matched_ig[:, :, s:e] = matched_ig
    det_out = _range_masks(np.array(det_area, dtype=np.float64), ranges[:num_areas])
    if occlusion:
        # Unlike the size ranges, nan (no occlusion score) means "never outside the band".
        occ_out = _range_masks(det_occ, ranges[num_areas:]) & ~np.isnan(det_occ)[None, :]
        det_out = np.concatenate([det_out, occ_out])
    det_ignore = det_matched_ig | (~det_matched & det_out[:, None, :])
    det_tp = det_matched & ~det_ignore
    det_fp = ~det_matched & ~det_ignore

    precision, recall = accumulate(
        det_category, det_score, det_rank, det_tp, det_fp, num_gt_not_ignored, category_present
    )
    stats, occ = summarize(precision, recall, range_names, occlusion)
    return YTVISResult(
        stats=stats,
        per_category_ap=per_category_ap(precision, gt.category_names),
        occlusion=occ,
        precision=precision,
        recall=recall,
        category_ids=list(gt.category_ids),
        category_names=list(gt.category_names),
        range_names=range_names,
        has_annotations=gt.has_annotations,
        num_dropped_results=dropped,
    )


def format_results_table(result: YTVISResult) -> str:
    """Human-readable summary: the 12 numbers (x100), OVIS numbers, and per-category AP."""
    from tabulate import tabulate

    pct = result.as_percentages()
    main = [(k, pct[k]) for k in STAT_NAMES]
    if result.occlusion is not None:
        main += [(k, pct[k]) for k in OCCLUSION_STAT_NAMES]
    lines = [
        tabulate([[f"{v:.3f}" for _, v in main]], headers=[k for k, _ in main], tablefmt="pipe",
                 stralign="center", disable_numparse=True)
    ]
    cats = [(n, pct[f"AP-{n}"]) for n in result.category_names]
    if cats:
        cols = 3
        rows = []
        for i in range(0, len(cats), cols):
            row = []
            for n, v in cats[i : i + cols]:
                row += [n, f"{v:.3f}"]
            rows.append(row)
        lines.append(
            tabulate(rows, headers=["category", "AP"] * min(cols, len(cats)), tablefmt="pipe",
                     disable_numparse=True)
        )
    return "\n\n".join(lines)
