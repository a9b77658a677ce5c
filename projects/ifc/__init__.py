"""IFC (Inter-frame Communication Transformers) for VIS Zoo: config keys and meta-architecture."""

from .config import add_ifc_config
from .convert import convert_official_state_dict
from .meta_arch import IFC

__all__ = ["IFC", "add_ifc_config", "convert_official_state_dict"]
