"""The YouTube-VIS / OVIS metric on hand-made cases with hand-computed expectations.

Precision is tp / (tp + fp + eps) (float64 eps), so "1" is 1 - 2e-16: compare with abs=1e-12.
"""

import logging

import numpy as np
import pytest

from tests.evaluation.random_ytvis import make_random_ytvis
from vis_zoo.evaluation import evaluate_ytvis, track_ious, track_occlusion_score
from tests.evaluation.ytvis_loop import evaluate_ytvis_loop
from tests.evaluation.ytvis_test_utils import box, gt_json, gt_track, pred, rle, two_video_gt, video

approx = lambda x: pytest.approx(x, abs=1e-12)  # noqa: E731


def _both(gt, results, **kw):
    """Score with the vectorised and the loop implementation; they must agree exactly."""
    fast = evaluate_ytvis(gt, results, **kw)
    slow = evaluate_ytvis_loop(gt, results, **kw)
    assert fast.stats == slow.stats
    np.testing.assert_array_equal(fast.precision, slow.precision)
    return fast


def test_perfect_predictions_and_the_two_tracks_ar1_quirk():
    gt, masks = two_video_gt()
    results = [pred(10, 1, 0.9, masks[1]), pred(10, 1, 0.8, masks[2]), pred(11, 3, 0.7, masks[3])]
    s = _both(gt, results).stats
    for key in ("AP", "AP50", "AP75", "APs", "AR10", "AR100", "ARs"):
        assert s[key] == approx(1.0), key
    # Every track is small (< 128^2 px): the medium/large settings have no GT and are undefined.
    for key in ("APm", "APl", "ARm", "ARl"):
        assert s[key] == -1, key
    # maxDet 1 per video: video 10 has two 'cat' tracks, so 'cat' recall is 1/2; 'dog' is 1.
    assert s["AR1"] == approx((0.5 + 1.0) / 2)


def test_size_range_comes_from_gt_areas_field():
    gt, masks = two_video_gt()
    for ann in gt["annotations"]:  # say every GT is medium-sized, whatever its masks
        ann["areas"] = [None if a is None else 20000 for a in ann["areas"]]
    results = [pred(10, 1, 0.9, masks[1]), pred(10, 1, 0.8, masks[2]), pred(11, 3, 0.7, masks[3])]
    s = _both(gt, results).stats
    assert s["APm"] == approx(1.0) and s["ARm"] == approx(1.0)
    # Small range: GTs ignored, predictions matched to them ignored too -> no GT -> undefined.
    assert s["APs"] == -1 and s["ARs"] == -1


# GT: a 10x10 box in frames 0-2, absent in frame 3.
_GT_FRAMES = [box(10, 10, 20, 20), box(10, 10, 20, 20), box(10, 10, 20, 20), None]


@pytest.mark.parametrize(
    "pred_frames, iou, num_thresholds_passed",
    [
        # frames 0, 1 exact; frame 2 missing (GT-only: +100 to U); frame 3 pred-only 5x10 (+50 to
        # U).
        # I = 200, U = 200 + 100 + 50 = 350 -> 4/7 = 0.571: passes 0.50 and 0.55.
        ([box(10, 10, 20, 20), box(10, 10, 20, 20), None, box(40, 40, 45, 50)], 200 / 350, 2),
        # frames 0, 1 exact, the rest missing: I = 200, U = 300 -> 2/3: passes 0.50 ... 0.65.
        ([box(10, 10, 20, 20), box(10, 10, 20, 20), None, None], 200 / 300, 4),
        # an all-zero mask counts like a missing frame.
        (
            [box(10, 10, 20, 20), box(10, 10, 20, 20), np.zeros((64, 64), np.uint8), None],
            200 / 300,
            4,
        ),
        # frame 0 only half covered (I 50, U 100), frames 1, 2 exact: I = 250, U = 300 -> 0.833.
        ([box(10, 10, 15, 20), box(10, 10, 20, 20), box(10, 10, 20, 20), None], 250 / 300, 7),
    ],
)
def test_missing_frames_track_iou_and_thresholds(pred_frames, iou, num_thresholds_passed):
    ious = track_ious([[rle(m) for m in pred_frames]], [[rle(m) for m in _GT_FRAMES]])
    assert ious[0, 0] == iou
    gt = gt_json([video(10, 4)], [gt_track(1, 10, 1, _GT_FRAMES)])
    s = _both(gt, [pred(10, 1, 0.9, pred_frames)]).stats
    # One GT, one prediction: AP at a threshold is 1 if it matches, else 0.
    assert s["AP"] == approx(num_thresholds_passed / 10)
    assert s["AR100"] == approx(num_thresholds_passed / 10)
    assert s["AP50"] == approx(1.0)
    assert s["AP75"] == approx(1.0 if num_thresholds_passed >= 6 else 0.0)


def test_swapped_categories_score_zero():
    gt, masks = two_video_gt()
    results = [pred(10, 3, 0.9, masks[1]), pred(10, 3, 0.8, masks[2]), pred(11, 1, 0.7, masks[3])]
    r = _both(gt, results)
    for key in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100", "ARs"):
        assert r.stats[key] == 0.0, key
    assert r.per_category_ap == {"cat": 0.0, "dog": 0.0}


def _crowd_case(iscrowd: int):
    a = [box(2, 2, 12, 12)] * 2
    b = [box(30, 30, 50, 50)] * 2
    gt = gt_json([video(10, 2)], [gt_track(1, 10, 1, a), gt_track(2, 10, 1, b, iscrowd=iscrowd)])
    # Two predictions on B ranked above the one on A.
    results = [pred(10, 1, 0.95, b), pred(10, 1, 0.92, b), pred(10, 1, 0.90, a)]
    return _both(gt, results).stats


def test_crowd_gt_absorbs_several_predictions_and_is_not_counted():
    s = _crowd_case(iscrowd=1)
    # Both predictions on the crowd track are ignored (neither TP nor FP); only A counts.
    assert s["AP"] == approx(1.0) and s["AR100"] == approx(1.0)
    s = _crowd_case(iscrowd=0)
    # Not crowd: TP, FP (B already taken), TP -> precision 1, 1/2, 2/3 at recall .5, .5, 1;
    # made non-increasing: 1 for recall <= .5 (51 points), 2/3 above (50 points).
    assert s["AP"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    assert s["AR100"] == approx(1.0)


def test_high_score_false_positives_ranked_above_true_positives():
    g = [[box(2, 2, 12, 12)] * 2, [box(20, 20, 30, 30)] * 2, [box(40, 40, 50, 50)] * 2]
    background = [[box(2, 50, 10, 60)] * 2, [box(50, 2, 60, 10)] * 2, [box(55, 30, 60, 40)] * 2]
    gt = gt_json([video(10, 2)], [gt_track(i + 1, 10, 1, m) for i, m in enumerate(g)])
    # Ranked FP, FP, TP, TP, TP, FP.
    results = [
        pred(10, 1, 0.99, background[0]),
        pred(10, 1, 0.95, background[1]),
        pred(10, 1, 0.90, g[0]),
        pred(10, 1, 0.80, g[1]),
        pred(10, 1, 0.70, g[2]),
        pred(10, 1, 0.60, background[2]),
    ]
    r = _both(gt, results)
    # precision 0, 0, 1/3, 2/4, 3/5, 3/6 at recall 0, 0, 1/3, 2/3, 1, 1 -> non-increasing: 3/5 up to
    # recall 1, so every one of the 101 recall points samples 3/5.
    curve = r.precision[:, :, 0, 0, 2]  # [T, R], area all, maxDet 100
    assert np.allclose(curve, 3 / 5, atol=1e-12)
    assert r.stats["AP"] == pytest.approx(0.6, abs=1e-12)
    assert r.stats["AR1"] == 0.0  # the single top prediction is a false positive
    assert r.stats["AR10"] == approx(1.0)


def test_precision_curve_drops_after_early_false_positives():
    g = [[box(2, 2, 12, 12)] * 2, [box(20, 20, 30, 30)] * 2]
    background = [[box(2, 50, 10, 60)] * 2, [box(50, 2, 60, 10)] * 2]
    gt = gt_json([video(10, 2)], [gt_track(1, 10, 1, g[0]), gt_track(2, 10, 1, g[1])])
    # Ranked TP, FP, FP, TP: precision 1, 1/2, 1/3, 2/4 at recall .5, .5, .5, 1.
    results = [
        pred(10, 1, 0.99, g[0]),
        pred(10, 1, 0.9, background[0]),
        pred(10, 1, 0.85, background[1]),
        pred(10, 1, 0.8, g[1]),
    ]
    r = _both(gt, results)
    curve = r.precision[0, :, 0, 0, 2]  # IoU .5
    assert curve[:51] == pytest.approx([1.0] * 51, abs=1e-12)  # recall 0 ... 0.50
    assert curve[51:] == pytest.approx([0.5] * 50, abs=1e-12)  # recall 0.51 ... 1
    assert r.stats["AP"] == pytest.approx((51 + 25) / 101, abs=1e-12)


def test_empty_results_score_zero_not_crash():
    gt, _ = two_video_gt()
    r = _both(gt, [])
    for key in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100", "ARs"):
        assert r.stats[key] == 0.0, key
    assert r.stats["APm"] == -1 and r.stats["ARl"] == -1  # no GT there: still undefined


def test_ties_keep_input_order():
    # Two predictions with the same score on one GT: the first listed is the TP, the second the FP.
    # With the FP listed first the curve starts at precision 0.
    a = [box(2, 2, 12, 12)] * 2
    gt = gt_json([video(10, 2)], [gt_track(1, 10, 1, a)])
    bg = [box(40, 40, 50, 50)] * 2
    first = _both(gt, [pred(10, 1, 0.5, a), pred(10, 1, 0.5, bg)]).stats
    second = _both(gt, [pred(10, 1, 0.5, bg), pred(10, 1, 0.5, a)]).stats
    assert first["AP"] == approx(1.0)
    assert second["AP"] == approx(0.5)


def test_only_top_100_predictions_per_video_and_category_count():
    a = [box(2, 2, 12, 12)] * 2
    gt = gt_json([video(10, 2)], [gt_track(1, 10, 1, a)])
    bg = [box(40, 40, 50, 50)] * 2
    results = [pred(10, 1, 0.9, bg) for _ in range(100)] + [pred(10, 1, 0.1, a)]
    assert _both(gt, results).stats["AR100"] == 0.0  # the TP is the 101st: cut
    results = [pred(10, 1, 0.9, bg) for _ in range(99)] + [pred(10, 1, 0.1, a)]
    assert _both(gt, results).stats["AR100"] == approx(1.0)


# ------------------------------------------------------------------------------------- OVIS ---
def test_track_occlusion_score_is_mean_of_top_half():
    assert track_occlusion_score(["no_occlusion"] * 4) == 0.0
    assert (
        track_occlusion_score(
            ["severe_occlusion", "severe_occlusion", "slight_occlusion", "no_occlusion"]
        )
        == 0.75
    )
    # n = 3 labelled frames -> top ceil(3/2) = 2: (0.25 + 0.25) / 2
    assert (
        track_occlusion_score(["slight_occlusion", "slight_occlusion", "no_occlusion", None])
        == 0.25
    )
    assert (
        track_occlusion_score(["severe_occlusion", "no_occlusion", "no_occlusion", "no_occlusion"])
        == 0.375
    )
    assert np.isnan(track_occlusion_score([None, None]))
    with pytest.raises(ValueError, match="annotation 7.*occlusion label"):
        track_occlusion_score(["partly"], ann_id=7)


def _ovis_case():
    n, sl, sv = "no_occlusion", "slight_occlusion", "severe_occlusion"
    x = [box(2, 2, 10, 10)] * 4
    y = [box(20, 2, 30, 10)] * 4
    z = [box(2, 20, 10, 30)] * 3 + [None]
    w = [box(40, 40, 50, 50)] * 4
    anns = [
        gt_track(1, 10, 1, x, occlusion=[n, n, n, n]),  # score 0     -> light
        gt_track(2, 10, 1, y, occlusion=[sv, sv, sl, n]),  # 0.75       -> heavy
        gt_track(3, 10, 1, z, occlusion=[sl, sl, n, None]),  # 0.25     -> light and medium
        gt_track(4, 10, 1, w, occlusion=[sv, n, n, n]),  # 0.375        -> medium
    ]
    background = [box(55, 2, 62, 12)] * 4  # overlaps no GT: no occlusion score, FP in every band
    results = [pred(10, 1, 0.95, background), pred(10, 1, 0.9, x), pred(10, 1, 0.8, y)]
    return gt_json([video(10, 4)], anns), results


def test_ovis_occlusion_bands():
    gt, results = _ovis_case()
    r = _both(gt, results)
    occ = r.occlusion
    # light: GTs x, z. Ranked: FP, TP (x), ignored (y is heavy). precision 0, 1/2 at recall 0, 1/2
    # -> 1/2 at the 51 recall points <= .5, 0 above.
    assert occ["APso"] == pytest.approx(51 * 0.5 / 101, abs=1e-12)
    assert occ["ARso"] == approx(0.5)
    # medium: GTs z, w, both missed; x and y predictions are matched to out-of-band GTs (ignored).
    assert occ["APmo"] == 0.0 and occ["ARmo"] == 0.0
    # heavy: GT y. FP, ignored (x), TP -> precision 1/2 at recall 1 everywhere.
    assert occ["APho"] == approx(0.5) and occ["ARho"] == approx(1.0)
    # All sizes: 4 GTs; FP, TP, TP -> 2/3 for recall <= .5.
    assert r.stats["AP"] == pytest.approx(51 * (2 / 3) / 101, abs=1e-12)


def test_ovis_metrics_only_when_labelled_or_requested():
    gt, results = _ovis_case()
    assert evaluate_ytvis(gt, results).occlusion is not None  # labels present: automatic
    assert evaluate_ytvis(gt, results, ovis=False).occlusion is None
    plain, masks = two_video_gt()
    res = [pred(10, 1, 0.9, masks[1])]
    assert evaluate_ytvis(plain, res).occlusion is None
    forced = evaluate_ytvis(plain, res, ovis=True).occlusion  # requested but no labels: undefined
    assert forced is not None and all(v == -1 for v in forced.values())


def test_ovis_unmatched_prediction_is_a_false_positive_in_every_band():
    """Predictions have no occlusion score (official OVIS scorer): an unmatched one is not excused
    by the band of the GT it overlaps. 100x100 video, 2 frames, one category:
    GT A rows/cols 5-45 (no occlusion -> light), GT B rows/cols 50-90 (severe -> heavy);
    P1 = A exactly (score 0.9), P2 = the top-left quarter of B (score 0.95; IoU 400/1600 = 0.25,
    never matched)."""
    a = [box(5, 5, 45, 45, 100, 100)] * 2
    b = [box(50, 50, 90, 90, 100, 100)] * 2
    quarter = [box(50, 50, 70, 70, 100, 100)] * 2
    gt = gt_json(
        [video(1, 2, 100, 100)],
        [
            gt_track(1, 1, 1, a, occlusion=["no_occlusion"] * 2),
            gt_track(2, 1, 1, b, occlusion=["severe_occlusion"] * 2),
        ],
        categories=((1, "cat"),),
    )
    r = _both(gt, [pred(1, 1, 0.9, a), pred(1, 1, 0.95, quarter)])
    occ = r.occlusion
    # light: GT A only (B is out of band, ignored). Ranked P2 (FP), P1 (TP): precision 0, 1/2 at
    # recall 0, 1 -> 1/2 at every recall point, every IoU threshold. (Giving P2 the occlusion of B
    # would ignore it here and give 1.)
    assert occ["APso"] == approx(0.5) and occ["ARso"] == approx(1.0)
    # heavy: GT B only. P2 is an FP (IoU 0.25), P1 matches the ignored A (ignored): AP 0.
    assert occ["APho"] == 0.0 and occ["ARho"] == 0.0
    # medium: no GT in the band -> undefined.
    assert occ["APmo"] == -1 and occ["ARmo"] == -1
    # All tracks: FP, TP with 2 GTs -> precision 1/2 up to recall 1/2 (51 of the 101 points).
    assert r.stats["AP"] == pytest.approx(51 * 0.5 / 101, abs=1e-12)


def test_ovis_track_without_occlusion_labels_warns_and_is_left_out_of_the_bands(caplog):
    gt, results = _ovis_case()
    gt["annotations"][1]["occlusion"] = [None] * 4  # track 2 (y): no label at all
    del gt["annotations"][3]["occlusion"]  # track 4 (w): no 'occlusion' key
    with caplog.at_level(logging.WARNING):
        r = _both(gt, results)
    messages = [rec.getMessage() for rec in caplog.records if "occlusion" in rec.getMessage()]
    # Once from each implementation; names the tracks and the bands that leave them out.
    assert len(messages) == 2
    assert "track 2 of video 10" in messages[0] and "track 4 of video 10" in messages[0]
    assert "light, medium, heavy" in messages[0]
    # heavy: y was its only GT -> undefined now; medium: only z is left (w is unlabelled), missed.
    assert r.occlusion["APho"] == -1 and r.occlusion["ARmo"] == 0.0
    # The size-range numbers still count both tracks: all 4 GTs, FP TP TP as before.
    assert r.stats["AP"] == pytest.approx(51 * (2 / 3) / 101, abs=1e-12)


# ------------------------------------------------------------------------------------ errors ---
def test_prediction_with_wrong_frame_count_names_the_video():
    gt, masks = two_video_gt()
    with pytest.raises(ValueError, match=r"video 10\).*2 frames.*has 3"):
        evaluate_ytvis(gt, [pred(10, 1, 0.9, masks[1][:2])])


def test_prediction_with_wrong_mask_size_names_the_video():
    gt, _ = two_video_gt()
    small = [box(2, 2, 10, 10, height=32, width=32)] * 2
    with pytest.raises(ValueError, match=r"video 11\).*size \[32, 32\].*\[64, 64\]"):
        evaluate_ytvis(gt, [pred(11, 3, 0.9, small)])


def test_result_for_unknown_video_is_an_error():
    gt, masks = two_video_gt()
    with pytest.raises(ValueError, match="video_id 999 is not a video of the GT"):
        evaluate_ytvis(gt, [pred(999, 1, 0.9, masks[1])])


def test_nan_score_and_missing_key_are_errors():
    gt, masks = two_video_gt()
    with pytest.raises(ValueError, match="score is NaN"):
        evaluate_ytvis(gt, [pred(10, 1, float("nan"), masks[1])])
    bad = pred(10, 1, 0.9, masks[1])
    del bad["segmentations"]
    with pytest.raises(ValueError, match="video 10.*missing key 'segmentations'"):
        evaluate_ytvis(gt, [bad])


def test_unknown_category_is_dropped():
    gt, masks = two_video_gt()
    results = [pred(10, 1, 0.9, masks[1]), pred(10, 1, 0.8, masks[2]), pred(11, 3, 0.7, masks[3])]
    base = evaluate_ytvis(gt, results)
    # A high-scoring prediction of category 5 (not in the GT) would be an FP if it were kept.
    extra = evaluate_ytvis(gt, [pred(10, 5, 0.99, masks[1])] + results)
    assert extra.num_dropped_results == 1
    assert extra.stats == base.stats


def test_gt_without_annotations_gives_undefined_numbers():
    gt, masks = two_video_gt()
    gt["annotations"] = None
    r = evaluate_ytvis(gt, [pred(10, 1, 0.9, masks[1])])
    assert not r.has_annotations
    assert all(v == -1 for v in r.stats.values())


def test_gt_without_videos_says_so_not_blaming_the_results():
    gt, masks = two_video_gt()
    gt["videos"] = []
    with pytest.raises(ValueError, match="GT JSON has no videos") as info:
        evaluate_ytvis(gt, [pred(10, 1, 0.9, masks[1])])
    assert "result" not in str(info.value)


def test_gt_annotation_of_unknown_category_is_an_error_naming_it():
    gt, _ = two_video_gt()
    gt["annotations"][2]["category_id"] = 7
    with pytest.raises(
        ValueError, match=r"GT annotation 3 of video 11: category_id 7 .*known ids: \[1, 3\]"
    ):
        evaluate_ytvis(gt, [])


def test_empty_results_warn(caplog):
    gt, _ = two_video_gt()
    with caplog.at_level(logging.WARNING):
        r = evaluate_ytvis(gt, [])
    assert any("results list is empty" in rec.getMessage() for rec in caplog.records)
    assert r.stats["AP"] == 0.0


def test_workers_split_gives_the_same_numbers():

    gt, results = make_random_ytvis(seed=5, occlusion=True, num_videos=8)
    one, two = evaluate_ytvis(gt, results, workers=1), evaluate_ytvis(gt, results, workers=2)
    assert one.stats == two.stats and one.occlusion == two.occlusion
    np.testing.assert_array_equal(one.precision, two.precision)


def test_error_in_the_worker_process_reaches_the_caller():
    gt, masks = two_video_gt()
    small = [box(2, 2, 10, 10, height=32, width=32)] * 2
    results = [pred(10, 1, 0.9, masks[1]), pred(11, 3, 0.9, small)]
    for workers in (1, 2):  # whichever process scores video 11 reports it
        with pytest.raises(
            ValueError, match=r"result #1 \(video 11\), frame 0: mask size \[32, 32\]"
        ):
            evaluate_ytvis(gt, results, workers=workers)


def test_worker_process_runs_jobs_and_reports_failures():
    from vis_zoo.evaluation.ytvis_metric import Worker, overlaps_of_job, prepare_overlaps_job

    gt, masks = two_video_gt()
    job = prepare_overlaps_job(
        [[rle(m) for m in masks[1]], [rle(m) for m in masks[2]]],
        [0, 0],
        [[rle(m) for m in masks[1]]],
        [0],
        64,
        64,
    )
    with Worker() as worker:
        worker.submit([job, job])
        remote = worker.collect()
        assert len(remote) == 2
        for got, want in zip(remote[0], overlaps_of_job(job)):
            np.testing.assert_array_equal(got, want)
        assert (
            remote[0][2][0, 0] == 100 * 3
        )  # the 10x10 box of track 1, in 3 frames, intersects itself
        worker.submit([("not a job",)])
        with pytest.raises(RuntimeError, match="worker process .* failed"):
            worker.collect()
        worker.submit([job])  # still serving after a failure
        assert len(worker.collect()) == 1
