"""MinVIS: A Minimal Video Instance Segmentation Framework without Video-based Training (Huang et
al., NeurIPS 2022) — the per-frame Mask2Former baseline.

Importing this package registers the `MinVIS` meta-architecture and `add_minvis_config`;
`convert_official_state_dict` is what tools/convert_checkpoint.py calls. Its tracker is the shared
`vis_zoo.modeling.match_queries_to_previous_frame`."""

from .config import add_minvis_config
from .convert import convert_official_state_dict
from .meta_arch import MinVIS

__all__ = ["add_minvis_config", "convert_official_state_dict", "MinVIS"]
