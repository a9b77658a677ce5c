from .defaults import add_vis_config, get_vis_cfg, register_method_config

__all__ = ["add_vis_config", "get_vis_cfg", "register_method_config"]
