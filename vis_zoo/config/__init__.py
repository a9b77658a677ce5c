from .defaults import (
    MethodConfig,
    add_vis_config,
    get_vis_cfg,
    method_config,
    num_classes_from_config,
    register_method_config,
)

__all__ = [
    "MethodConfig",
    "add_vis_config",
    "get_vis_cfg",
    "method_config",
    "num_classes_from_config",
    "register_method_config",
]
