"""Import a script from tools/ (not a package) as a module, for the tests in this folder."""

import importlib.util
import os
from types import ModuleType

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_tool(filename: str) -> ModuleType:
    """tools/<filename> executed as a fresh module named vis_zoo_tool_<stem>."""
    path = os.path.join(REPO, "tools", filename)
    spec = importlib.util.spec_from_file_location(
        f"vis_zoo_tool_{os.path.splitext(filename)[0]}", path
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
