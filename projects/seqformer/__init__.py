"""SeqFormer (Wu et al., ECCV 2022): sequential transformer for video instance segmentation."""

from . import config  # noqa: F401  (registers add_seqformer_config)
from .config import add_seqformer_config
from .convert import convert_official_state_dict
from .meta_arch import SeqFormer

__all__ = ["SeqFormer", "add_seqformer_config", "convert_official_state_dict"]
