"""Mask2Former-VIS: "Mask2Former for Video Instance Segmentation" (Cheng et al., arXiv
2112.10764) — the Mask2Former detector with clip-level queries over space-time features.

Importing this package registers the `VideoMaskFormer` meta-architecture (the official name) and
`add_mask2former_vis_config`; `convert_official_state_dict` is what tools/convert_checkpoint.py
calls."""

from .config import add_mask2former_vis_config
from .convert import convert_official_state_dict
from .meta_arch import VideoMaskFormer

__all__ = ["add_mask2former_vis_config", "convert_official_state_dict", "VideoMaskFormer"]
