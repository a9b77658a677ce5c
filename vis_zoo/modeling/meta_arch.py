"""The interface every VIS Zoo meta-architecture implements: `VideoInstanceSegmenter`.

detectron2's trainer and our tools call a meta-architecture as `model(batched_inputs)` with a list
of mapper dicts (one per video; see docs/architecture.md for the dict keys). This base class turns
that call into the two methods a method writes:

    forward_train(batched_inputs) -> {"loss_*": scalar Tensor}     (weighted; the trainer sums them)
    inference_video(video) -> output dict                          (one video of any length)

and checks every inference output against the output contract (`check_video_output`). The hooks
the engine and the benchmark call have defaults here, so a method overrides only what it needs:

    adapt_checkpoint_state_dict(state_dict) -> state_dict   the checkpointer calls it before loading
    processed_frames(num_frames) -> int                     frames the network really runs on

A subclass registers itself with `@META_ARCH_REGISTRY.register()` and builds its modules in a
`@configurable` `__init__` (keyword-only) with a `from_config(cfg)` classmethod, as detectron2 does.
"""

from typing import Any, Dict, List, Sequence

import torch
from torch import Tensor, nn

from .backbone import input_frames
from .postprocessing import check_video_output

__all__ = ["VideoInstanceSegmenter"]


class VideoInstanceSegmenter(nn.Module):
    """Base class of the video instance segmentation meta-architectures.

    Subclasses call `register_pixel_normalization(pixel_mean, pixel_std)` in `__init__` (the
    `device` property reads those buffers) and set `num_classes` (K, foreground classes); they
    implement `forward_train` and `inference_video`.
    """

    num_classes: int

    def register_pixel_normalization(
        self, pixel_mean: Sequence[float], pixel_std: Sequence[float]
    ) -> None:
        """Non-persistent buffers `pixel_mean`, `pixel_std` [C, 1, 1] (float32): the per-channel
        normalisation of the 0-255 input frames, and what `device` reports."""
        self.register_buffer(
            "pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[dict]):
        """Training: `forward_train`'s loss dict. Inference: one checked output dict per video."""
        if self.training:
            return self.forward_train(batched_inputs)
        outputs = []
        for video in batched_inputs:
            output = self.inference_video(video)
            size = (
                (video["height"], video["width"])
                if "height" in video and "width" in video
                else None
            )
            check_video_output(
                output,
                num_frames=len(input_frames(video)),
                image_size=size,
                num_classes=self.num_classes,
            )
            outputs.append(output)
        return outputs

    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, Tensor]:
        """B training clips (mapper dicts with "image" and "instances") -> weighted losses.

        Returns:
            {"loss_<name>": scalar Tensor}: already multiplied by their weights; the trainer sums
            them. Other scalars to log go to detectron2's event storage, not into this dict.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement forward_train")

    def inference_video(self, video: dict) -> dict:
        """One test video (mapper dict: "image" T frames [3, h, w], original "height"/"width") ->
        the output contract: {"image_size": (H, W), "pred_scores": float [K'], "pred_labels": long
        [K'] (contiguous class ids), "pred_masks": K' entries, each bool [T, H, W] or T RLE dicts /
        None} at the original size H x W. Must run under bounded memory for any T."""
        raise NotImplementedError(f"{type(self).__name__} does not implement inference_video")

    def adapt_checkpoint_state_dict(self, state_dict: Dict[str, Any]) -> Dict[str, Any]:
        """Rewrite a checkpoint's model state_dict before it is loaded into this model (e.g. inflate
        a one-frame checkpoint to T frames). Default: unchanged. Official checkpoints of another
        code base go through the method's `convert.py` instead."""
        return state_dict

    def processed_frames(self, num_frames: int) -> int:
        """Frames the network runs on for a `num_frames`-frame video (more than `num_frames` when a
        short video is tiled to a fixed clip length). The benchmark divides FLOPs by it."""
        return int(num_frames)
