"""vis_zoo.zoo.stages: the max-T search, the random training batch and GFLOPs per processed
frame."""

import pytest
import torch

from vis_zoo.zoo.stages import count_gflops_per_frame, random_training_batch, search_max_frames
from vis_zoo.zoo.table import render_table
from tests.zoo.zoo_helpers import make_row


def test_search_max_frames_doubles_then_bisects():
    limit = 37
    seen = []

    def probe(t):
        seen.append(t)
        return {"peak_gb": t / 10, "over_budget": t > limit}

    res = search_max_frames(probe, start=8, cap=64)
    assert seen[:4] == [8, 16, 32, 64]
    assert limit - limit // 8 <= res["max_frames"] <= limit and not res["capped"]
    assert res["first_failure"] > res["max_frames"] and len(res["probes"]) == len(seen)

    res = search_max_frames(lambda t: {"over_budget": False}, start=3, cap=20)
    assert res["max_frames"] == 20 and res["capped"]

    res = search_max_frames(lambda t: {"error": "boom"}, start=4, cap=8)
    assert res["max_frames"] == 0 and res["probe_errors"][0] == "boom"


def test_random_training_batch_follows_the_mapper_contract():
    batch = random_training_batch(2, 3, 32, 48, num_classes=5, seed=1)
    assert len(batch) == 2
    for video in batch:
        assert len(video["image"]) == len(video["instances"]) == 3
        first = video["instances"][0]
        assert first.gt_ids.tolist() == [0, -1] and not first.gt_masks.tensor[1].any()
        for inst in video["instances"]:
            assert inst.image_size == (32, 48) and len(inst) == 2
            present = inst.gt_ids >= 0
            assert inst.gt_masks.tensor[present].flatten(1).any(1).all()


class _PerFrameConv(torch.nn.Module):
    """A 1x1 conv over every frame it runs on: 3*4 multiply-adds per pixel and frame."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def frames_run(self, frames):
        return frames

    def forward(self, videos):
        frames = self.frames_run(torch.stack(list(videos[0]["image"])).float())
        y = self.conv(frames)
        return [{"pred_scores": y.mean((0, 2, 3)), "pred_masks": [y[:, 0] > 0]}]


class _FixedClipConv(_PerFrameConv):
    """Tiles any shorter video to a 5-frame clip (as VisTR does) and says so through the hook."""

    clip = 5

    def frames_run(self, frames):
        n = len(frames.unbind(0))  # a Python int while tracing (frames.shape[0] would be traced)
        return torch.stack([frames[i % n] for i in range(max(self.clip, n))])

    def processed_frames(self, num_frames):
        return max(num_frames, self.clip)


def test_gflops_per_frame_divides_by_the_frames_the_model_processed():
    per_pixel = 3 * 4 / 1e9
    plain = count_gflops_per_frame(_PerFrameConv(), 2, 8, 8)
    clip = count_gflops_per_frame(_FixedClipConv(), 2, 8, 8)
    assert (
        plain["gflops_per_video"] == pytest.approx(2 * 64 * per_pixel)
        and plain["flops_processed_frames"] == 2
    )
    assert clip["gflops_per_video"] == pytest.approx(
        5 * 64 * per_pixel
    )  # the whole clip was computed
    assert (clip["flops_frames"], clip["flops_processed_frames"]) == (2, 5)
    # per frame of work, both models cost the same (before: the clip model showed 2.5x)
    assert (
        clip["gflops_per_frame"]
        == pytest.approx(plain["gflops_per_frame"])
        == pytest.approx(64 * per_pixel)
    )

    # the table divides the per-video count by the processed frames; older rows keep their stored
    # value
    new = make_row(
        "vistr/ytvis19_R50",
        "vistr",
        "configs/vistr/ytvis19_R50.yaml",
        gflops_per_video=7.2,
        flops_frames=2,
        flops_processed_frames=36,
        gflops_per_frame=3.6,
    )
    old = make_row("ifc/ytvis19_R50", "ifc", "configs/ifc/ytvis19_R50.yaml", gflops_per_frame=1.25)
    block = render_table({"rows": {new["key"]: new, old["key"]: old}}, ".", ".")
    cells = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
        for line in block.splitlines()
        if line.startswith("| VisTR") or line.startswith("| IFC")
    }
    assert cells["VisTR"][6] == "0.20" and cells["IFC"][6] == "1.25"
    assert "number of frames the model processed" in block
