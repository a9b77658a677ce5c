"""Atomic file writes: a crash mid-write never leaves a truncated results file or checkpoint.

`atomic_open(path)` writes `.<name>.<random>.tmp` next to `path` and renames it over `path` when the
write succeeded. While it writes, it holds an exclusive `flock` on the temporary file; the kernel
drops that lock when the writer exits, however it exits (kill -9 included).
`remove_stale_temporary_files` relies on this: a temporary file it can lock belongs to no live
writer and is removed, one it cannot lock is still being written and is left alone — whichever
process or machine (over NFS) writes it.
"""

import contextlib
import errno
import fnmatch
import json
import os
import secrets
from typing import Iterable, List

try:
    import fcntl
except ImportError:  # not on Windows: writes stay atomic, stale temporary files are not detected
    fcntl = None

_TMP_SUFFIX = ".tmp"


def _temporary_name(basename: str) -> str:
    return f".{basename}.{secrets.token_hex(6)}{_TMP_SUFFIX}"


def _create_locked_temporary(directory: str, basename: str):
    """Create and lock a fresh temporary file for `basename` in `directory`; returns (fd, path).

    Mode 0o666 goes through the process umask (and the folder's default ACL), so the renamed file
    gets the same permissions as any other file the user creates (tempfile.mkstemp would make 0600).
    """
    while True:
        tmp = os.path.join(directory, _temporary_name(basename))
        try:
            fd = os.open(
                tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666
            )
        except FileExistsError:
            continue
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleaner may have locked and removed the file between our open and our lock: write into a
        # file that no longer has a name and the final rename would fail, so start again.
        if os.fstat(fd).st_nlink > 0:
            return fd, tmp
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w"):
    """Open a temporary file next to `path`; on success it replaces `path` in one rename.

    The file is created with the permissions the umask gives (as `open(path, "w")` would)."""
    if "r" in mode or "a" in mode or "+" in mode:
        raise ValueError(f"atomic_open writes a new file; mode {mode!r} is not supported")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _create_locked_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            # Rename before closing: the lock must cover the temporary file for as long as it has
            # its name, or a cleaner could take a complete file for an abandoned one.
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_json(path: str, obj) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f)


def remove_stale_temporary_files(directory: str, patterns: Iterable[str]) -> List[str]:
    """Remove `atomic_open`'s temporary files in `directory` that no live writer holds.

    Args:
        directory: the folder to clean (not its subfolders).
        patterns: fnmatch patterns of the target names whose temporary files to consider, e.g.
            ["*.pth", "last_checkpoint"] matches `.model_0000009.pth.1a2b3c4d5e6f.tmp`.
    Returns:
        the removed paths. Files still being written (locked by a live process) are kept.
    """
    if fcntl is None or not os.path.isdir(directory):
        return []
    tmp_patterns = [f".{p}.*{_TMP_SUFFIX}" for p in patterns]
    removed = []
    for name in sorted(os.listdir(directory)):
        if not any(fnmatch.fnmatchcase(name, p) for p in tmp_patterns):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, IsADirectoryError):
            continue  # renamed or removed by its writer meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue  # a live writer holds it
                raise
            # Unlink while holding the lock: a writer that opened this name but has not locked it
            # yet sees the file lose its name and retries with a new one.
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
        finally:
            os.close(fd)
    return removed
