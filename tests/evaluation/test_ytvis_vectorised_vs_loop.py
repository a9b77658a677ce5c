"""The vectorised metric equals the straightforward loop implementation on random seeded inputs."""

import numpy as np
import pytest

from tests.evaluation.random_ytvis import make_random_ytvis
from vis_zoo.evaluation import evaluate_ytvis, track_ious
from tests.evaluation.ytvis_loop import evaluate_ytvis_loop, pair_iou_loop
from tests.evaluation.ytvis_test_utils import rle


@pytest.mark.parametrize(
    "seed, config",
    [
        (0, dict()),
        (
            1,
            dict(
                num_categories=1,
                preds_per_video=110,
                num_videos=2,
                max_gt_per_video=6,
                crowd_prob=0.3,
            ),
        ),
        (2, dict(occlusion=True, num_videos=5, preds_per_video=10)),
        (3, dict(occlusion=True, num_categories=2, num_frames=(1, 6), max_gt_per_video=8)),
    ],
)
def test_vectorised_equals_loop_on_random_inputs(seed, config):
    gt, results = make_random_ytvis(seed=seed, **config)
    fast = evaluate_ytvis(gt, results)
    slow = evaluate_ytvis_loop(gt, results)
    assert fast.stats == slow.stats
    assert fast.occlusion == slow.occlusion
    assert (fast.occlusion is not None) == bool(config.get("occlusion"))
    np.testing.assert_array_equal(fast.precision, slow.precision)
    np.testing.assert_array_equal(fast.recall, slow.recall)
    # Not a degenerate case: some settings are defined and neither 0 nor 1.
    assert any(0.0 < v < 0.99 for v in fast.stats.values())


def test_track_ious_equal_frame_by_frame_merges_on_random_masks():
    rng = np.random.default_rng(0)
    length, h, w = 4, 24, 20

    def random_track():
        frames = []
        for _ in range(length):
            r = rng.random()
            if r < 0.2:
                frames.append(None)
            elif r < 0.3:
                frames.append(rle(np.zeros((h, w), np.uint8)))
            else:
                frames.append(rle((rng.random((h, w)) < rng.uniform(0.05, 0.6)).astype(np.uint8)))
        return frames

    preds = [random_track() for _ in range(7)]
    gts = [random_track() for _ in range(5)]
    ious = track_ious(preds, gts)
    expected = np.array([[pair_iou_loop(p, g) for g in gts] for p in preds])
    np.testing.assert_array_equal(ious, expected)
    assert (ious > 0).any() and (ious < 1).all()
