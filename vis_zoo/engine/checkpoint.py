"""A DetectionCheckpointer whose files are written atomically, and which lets a model adapt a
checkpoint's state_dict before loading.

detectron2 writes `model_XXXX.pth` and `last_checkpoint` in place, so a job killed mid-write leaves a
truncated checkpoint that `--resume` then fails to load. Here each file is written to a temporary
file in the same folder and renamed over the target, so an existing checkpoint is never damaged.

A model with a method `adapt_checkpoint_state_dict(state_dict) -> state_dict` gets to rewrite the
loaded weights before detectron2 matches them by name and shape (e.g. VisTR inflates the queries of
a one-frame checkpoint to its T frames; without it detectron2 would drop them as a shape mismatch).
"""
import os
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer

from vis_zoo.utils.io import atomic_open


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        with atomic_open(save_file, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def _load_model(self, checkpoint: Any):
        model = getattr(self.model, "module", self.model)  # DistributedDataParallel wraps the model
        adapt = getattr(model, "adapt_checkpoint_state_dict", None)
        if callable(adapt) and isinstance(checkpoint.get("model"), dict):
            checkpoint["model"] = adapt(checkpoint["model"])
        return super()._load_model(checkpoint)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)
