"""VisTR (Wang et al., CVPR 2021): end-to-end video instance segmentation with transformers."""

from . import config  # noqa: F401  (registers add_vistr_config)
from .config import add_vistr_config
from .convert import convert_official_state_dict
from .meta_arch import VisTR

__all__ = ["VisTR", "add_vistr_config", "convert_official_state_dict"]
