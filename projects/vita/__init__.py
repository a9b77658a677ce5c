"""VITA: Video Instance segmentation via object Token Association (Heo et al., NeurIPS 2022).

Importing this package registers the `Vita` meta-architecture and `add_vita_config`;
`convert_official_state_dict` is what tools/convert_checkpoint.py calls."""

from .config import add_vita_config
from .convert import convert_official_state_dict
from .meta_arch import Vita
from .transformer import VITAModule

__all__ = ["add_vita_config", "convert_official_state_dict", "Vita", "VITAModule"]
