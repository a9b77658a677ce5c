from .checkpoint import AtomicDetectionCheckpointer
from .launch import launch, shut_down_process_group
from .setup import setup, build_argument_parser
from .trainer import VISTrainer, build_optimizer, build_param_groups

__all__ = [
    "AtomicDetectionCheckpointer",
    "VISTrainer",
    "build_argument_parser",
    "build_optimizer",
    "build_param_groups",
    "launch",
    "shut_down_process_group",
    "setup",
]
