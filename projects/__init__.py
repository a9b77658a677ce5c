"""Method packages of VIS Zoo, installed as `vis_zoo_projects.<folder>`.

`METHOD_PACKAGES` says which folder implements which MODEL.META_ARCHITECTURE. A method's package is
imported only when a config selects it (`import_method`): importing it registers its
meta-architecture in detectron2's META_ARCH_REGISTRY and its config keys with
`vis_zoo.config.register_method_config`. Nothing imports every method, so one broken method folder
cannot stop the others.
"""

import importlib
from types import ModuleType
from typing import Optional

# MODEL.META_ARCHITECTURE -> the folder under projects/ that implements it.
METHOD_PACKAGES = {
    "VisTR": "vistr",
    "IFC": "ifc",
    "SeqFormer": "seqformer",
    "Vita": "vita",
    "MinVIS": "minvis",
    "VideoMaskFormer": "mask2former_vis",
}
METHODS = sorted(METHOD_PACKAGES.values())


def import_method(meta_architecture: str) -> Optional[ModuleType]:
    """Import the package of a VIS Zoo meta-architecture (None when it is not one of ours)."""
    folder = METHOD_PACKAGES.get(meta_architecture)
    if folder is None:
        return None
    return importlib.import_module(f"{__name__}.{folder}")
