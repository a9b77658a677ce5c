"""Method packages of VIS Zoo, installed as `vis_zoo_projects.<method>`.

Importing `vis_zoo_projects` imports every method so that each registers its meta-architecture in
detectron2's META_ARCH_REGISTRY and its config keys in `vis_zoo.config.get_vis_cfg`.
"""
import importlib
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = sorted(
    name for name in os.listdir(_HERE)
    if os.path.isfile(os.path.join(_HERE, name, "__init__.py"))
)
for _name in METHODS:
    importlib.import_module(f"{__name__}.{_name}")
