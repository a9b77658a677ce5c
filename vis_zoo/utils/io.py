"""Atomic file writes: a crash mid-write never leaves a truncated results file or checkpoint."""
import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w"):
    """Open a temporary file next to `path`; on success it replaces `path` in one rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_json(path: str, obj) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f)
