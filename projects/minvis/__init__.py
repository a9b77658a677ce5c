"""MinVIS: A Minimal Video Instance Segmentation Framework without Video-based Training (Huang et al.,
NeurIPS 2022) — the per-frame Mask2Former baseline.

Importing this package registers the `MinVIS` meta-architecture and `add_minvis_config`;
`convert_official_state_dict` is what tools/convert_checkpoint.py calls."""
from .config import add_minvis_config
from .convert import convert_official_state_dict
from .meta_arch import MinVIS, match_queries_to_previous_frame

__all__ = ["add_minvis_config", "convert_official_state_dict", "MinVIS", "match_queries_to_previous_frame"]
