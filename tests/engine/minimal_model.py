"""A deliberately small VIS model used only by the tests to prove the trainer/evaluator loop.

It is not shipped (lives in tests/). Per frame, a few convolutions predict one mask logit map per
category; training uses per-pixel BCE against the union of that category's GT masks; inference
emits, per category that fires anywhere in the video, one track (mask = thresholded logits in every
frame, score = mean foreground probability). That is a valid (if weak) video instance segmenter
that follows the model output contract, so the whole loop — loader, trainer, checkpointing, the
evaluator — is exercised with real tensors.
"""

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn


@META_ARCH_REGISTRY.register()
class MinimalVISModel(nn.Module):
    @configurable
    def __init__(self, *, num_classes: int, pixel_mean, pixel_std):
        super().__init__()
        self.num_classes = num_classes
        # "backbone" in the name: the optimizer's backbone multiplier applies to it.
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(16, num_classes, 1)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        return {
            # Dataset facts come from metadata, never from the dataset name.
            "num_classes": len(MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).thing_classes),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def _logits(self, frames):
        """frames: list of T uint8 tensors [3, H, W] -> logits [T, K, H, W]."""
        x = torch.stack([f.to(self.device).float() for f in frames])
        x = (x - self.pixel_mean) / self.pixel_std
        logits = self.head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, batched_inputs):
        if self.training:
            losses = []
            for video in batched_inputs:
                logits = self._logits(video["image"])
                target = torch.zeros_like(logits)
                for t, inst in enumerate(video["instances"]):
                    masks = inst.gt_masks.tensor.to(self.device).float()
                    for row in range(len(inst)):
                        if inst.gt_ids[row] >= 0:
                            c = int(inst.gt_classes[row])
                            target[t, c] = torch.maximum(target[t, c], masks[row])
                losses.append(F.binary_cross_entropy_with_logits(logits, target))
            return {"loss_mask": torch.stack(losses).mean()}

        outputs = []
        for video in batched_inputs:
            logits = self._logits(video["image"])  # [T, K, h, w] at the resized test size
            logits = F.interpolate(logits, size=(video["height"], video["width"]), mode="bilinear")
            probs = logits.sigmoid()
            masks = probs > 0.5  # [T, K, H, W]
            keep = [c for c in range(self.num_classes) if masks[:, c].any()]
            scores = [float(probs[:, c][masks[:, c]].mean()) for c in keep]
            outputs.append(
                {
                    "image_size": (video["height"], video["width"]),
                    "pred_scores": torch.tensor(scores, dtype=torch.float32),
                    "pred_labels": torch.tensor(keep, dtype=torch.long),
                    "pred_masks": [masks[:, c].cpu() for c in keep],
                }
            )
        return outputs
