"""Run a Python script with detectron2's compiled extension (`detectron2._C`) unavailable.

    python tests/engine/without_detectron2_extension.py ATTEMPTS_FILE SCRIPT [ARGS...]

An import hook makes every import of `detectron2._C` fail, as on a machine whose detectron2 is the
pure-Python package (no build for its PyTorch), and appends one line per attempt to ATTEMPTS_FILE:
the module name and the file that asked for it. detectron2 itself tries a few optional imports and
catches the failure (deformable convolution, its fast COCO evaluation, the environment report); a
caller can check that nothing else did, since a caught ImportError would otherwise hide a path that
needs the extension. SCRIPT then runs as __main__ with ARGS.
"""

import importlib.abc
import runpy
import sys

EXTENSION = "detectron2._C"


def _importing_file() -> str:
    """The first file on the stack outside the import machinery and this module."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<frozen") and filename != __file__:
            return filename
        frame = frame.f_back
    return "?"


class _HideExtension(importlib.abc.MetaPathFinder):
    def __init__(self, attempts_file: str):
        self.attempts_file = attempts_file

    def find_spec(self, name, path, target=None):
        if name == EXTENSION or name.startswith(EXTENSION + "."):
            with open(self.attempts_file, "a") as f:
                f.write(f"{name}\t{_importing_file()}\n")
            raise ImportError(f"{name} is hidden: this run checks the project without it")
        return None


def main() -> None:
    attempts_file, script, *args = sys.argv[1:]
    sys.meta_path.insert(0, _HideExtension(attempts_file))
    for name in [m for m in sys.modules if m == EXTENSION or m.startswith(EXTENSION + ".")]:
        del sys.modules[name]
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
