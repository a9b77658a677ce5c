"""A deliberately straightforward, per-pair-loop implementation of the YouTube-VIS / OVIS metric.

Slow on purpose: it walks frames pair by pair with pycocotools RLE merges, matches predictions to
GTs
with nested Python loops, and accumulates precision point by point. It exists to cross-check the
vectorised `vis_zoo.evaluation.ytvis_metric.evaluate_ytvis`: the tests in this folder compare the
two on random inputs.
It shares only the JSON parsing/validation and the final summary (means over the precision/recall
arrays) with the vectorised version.
"""

import logging
from typing import List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from vis_zoo.evaluation.ytvis_metric import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    MAX_DETS,
    RECALL_THRESHOLDS,
    YTVISResult,
    load_ground_truth,
    load_predictions,
    make_result,
    settings_ranges,
    warn_unlabelled_tracks,
)

logger = logging.getLogger(__name__)

__all__ = ["evaluate_ytvis_loop", "pair_iou_loop"]


def pair_iou_loop(
    pred_frames: Sequence[Optional[dict]], gt_frames: Sequence[Optional[dict]]
) -> float:
    """Track IoU of one (prediction, GT) pair, frame by frame with RLE merges."""
    inter = 0.0
    union = 0.0
    for p, g in zip(pred_frames, gt_frames):
        if p and g:
            inter += float(mask_util.area(mask_util.merge([p, g], intersect=True)))
            union += float(mask_util.area(mask_util.merge([p, g], intersect=False)))
        elif g:
            union += float(mask_util.area(g))
        elif p:
            union += float(mask_util.area(p))
    return inter / union if union > 0 else 0.0


def _inside(value: float, lo: float, hi: float) -> bool:
    return lo <= value <= hi  # False for nan


def evaluate_ytvis_loop(
    gt_json: dict, results: Sequence[dict], ovis: Optional[bool] = None
) -> YTVISResult:
    """Same contract and numbers as `evaluate_ytvis`, computed with plain loops."""
    gt = load_ground_truth(gt_json)
    preds, dropped = load_predictions(gt, results)
    occlusion = gt.has_occlusion_labels if ovis is None else bool(ovis)
    if occlusion:
        warn_unlabelled_tracks(gt)
    ranges, range_names = settings_ranges(occlusion)
    num_size_ranges = len(AREA_RANGES)
    num_v, num_k, num_a = len(gt.video_ids), len(gt.category_ids), len(ranges)
    num_t, num_r, num_m = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(MAX_DETS)

    # per_video[k][a][v] = None or dict(scores, matched[t][d], ignored[t][d], num_not_ignored_gt)
    per_video: List[List[List[Optional[dict]]]] = [
        [[None] * num_v for _ in range(num_a)] for _ in range(num_k)
    ]
    gts_of, dts_of = {}, {}
    for g in gt.tracks:
        gts_of.setdefault((g.video_index, g.category_index), []).append(g)
    pred_rles = [p.rles(gt.heights[p.video_index], gt.widths[p.video_index]) for p in preds]
    for p, rles in zip(preds, pred_rles):
        dts_of.setdefault((p.video_index, p.category_index), []).append((p, rles))
    for v in range(num_v):
        for k in range(num_k):
            gts = gts_of.get((v, k), [])
            dts = dts_of.get((v, k), [])
            dts = sorted(dts, key=lambda pr: -pr[0].score)[: MAX_DETS[-1]]  # sorted() is stable
            if not gts and not dts:
                continue
            ious = [[pair_iou_loop(rles, g.rles) for g in gts] for _, rles in dts]
            dt_areas = []
            for _, rles in dts:
                areas = [int(mask_util.area(r)) for r in rles if r]
                areas = [x for x in areas if x]
                dt_areas.append(float(np.mean(areas)) if areas else 0.0)
            dts = [d for d, _ in dts]
            for a, (lo, hi) in enumerate(ranges):
                size_range = a < num_size_ranges
                g_ignored = []
                for g in gts:
                    value = g.mean_area if size_range else g.occlusion
                    g_ignored.append(g.iscrowd or not _inside(value, lo, hi))
                gt_order = sorted(
                    range(len(gts)), key=lambda j: g_ignored[j]
                )  # ignored last, stable
                matched = [[False] * len(dts) for _ in range(num_t)]
                ignored = [[False] * len(dts) for _ in range(num_t)]
                for t, thr in enumerate(IOU_THRESHOLDS):
                    taken = [False] * len(gts)
                    for i in range(len(dts)):
                        best, best_iou = -1, min(thr, 1 - 1e-10)
                        for j in gt_order:
                            if taken[j] and not gts[j].iscrowd:
                                continue
                            if best > -1 and not g_ignored[best] and g_ignored[j]:
                                break
                            if ious[i][j] < best_iou:
                                continue
                            best, best_iou = j, ious[i][j]
                        if best > -1:
                            matched[t][i] = True
                            ignored[t][i] = g_ignored[best]
                            taken[best] = True
                    for i in range(len(dts)):
                        # Predictions have no occlusion score: in an occlusion band an unmatched
                        # prediction is always a false positive; only the size range excuses one.
                        if size_range and not matched[t][i] and not _inside(dt_areas[i], lo, hi):
                            ignored[t][i] = True
                per_video[k][a][v] = {
                    "scores": [d.score for d in dts],
                    "matched": matched,
                    "ignored": ignored,
                    "num_gt": sum(1 for x in g_ignored if not x),
                }

    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    for k in range(num_k):
        for a in range(num_a):
            entries = [e for e in per_video[k][a] if e is not None]
            if not entries:
                continue
            num_gt = sum(e["num_gt"] for e in entries)
            if num_gt == 0:
                continue
            for m, max_det in enumerate(MAX_DETS):
                dets = []  # (score, matched per t, ignored per t), videos in order
                for e in entries:
                    for i in range(min(max_det, len(e["scores"]))):
                        dets.append(
                            (
                                e["scores"][i],
                                [e["matched"][t][i] for t in range(num_t)],
                                [e["ignored"][t][i] for t in range(num_t)],
                            )
                        )
                dets = sorted(dets, key=lambda x: -x[0])
                for t in range(num_t):
                    tp = fp = 0
                    rc, pr = [], []
                    for _, mt, ig in dets:
                        if ig[t]:
                            pass
                        elif mt[t]:
                            tp += 1
                        else:
                            fp += 1
                        rc.append(tp / num_gt)
                        pr.append(tp / (fp + tp + np.spacing(1)))
                    recall[t, k, a, m] = rc[-1] if dets else 0
                    for i in range(len(pr) - 1, 0, -1):
                        if pr[i] > pr[i - 1]:
                            pr[i - 1] = pr[i]
                    for r, rec_thr in enumerate(RECALL_THRESHOLDS):
                        value = 0.0
                        for i in range(len(rc)):
                            if rc[i] >= rec_thr:
                                value = pr[i]
                                break
                        precision[t, r, k, a, m] = value
    return make_result(gt, precision, recall, range_names, occlusion, dropped)
