"""The checkpointer every tool uses: atomic writes, clear errors on damaged files, and a `--resume`
that falls back to the newest checkpoint that loads.

- detectron2 writes `model_XXXX.pth` and `last_checkpoint` in place, so a job killed mid-write
  leaves a truncated checkpoint that `--resume` then fails to load. Here each file is written to a
  temporary file in the same folder and renamed over the target (`vis_zoo.utils.io.atomic_open`), so
  an existing checkpoint is never damaged. Temporary files of writes that were killed are removed
  when the writer starts and after each save.
- A checkpoint that cannot be read (truncated copy or download, a file that is not a checkpoint)
  raises `DamagedCheckpointError`, which names the file and its size, instead of PyTorch's bare
  "PytorchStreamReader failed reading zip archive".
- Resuming when `last_checkpoint` names a damaged or missing file loads the newest other
  `model_*.pth` that loads, with a warning naming both; if none loads it is an error (see
  `resume_or_load`).
- A model with a method `adapt_checkpoint_state_dict(state_dict) -> state_dict` gets to rewrite the
  loaded weights before detectron2 matches them by name and shape (e.g. VisTR inflates the queries
  of a one-frame checkpoint to its T frames; without it detectron2 would drop them as a shape
  mismatch).
"""

import os
import pickle
import re
from typing import Any, Dict, List, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer

from vis_zoo.utils.io import atomic_open, remove_stale_temporary_files

# Names of the files this checkpointer writes, as patterns for their temporary files.
_WRITTEN_PATTERNS = ("*.pth", "last_checkpoint")
# What torch.load / pickle raise on a truncated or foreign file (a zip without its central
# directory, "Ran out of input", "unexpected EOF", EINVAL when seeking past the end, "invalid load
# key").
_UNREADABLE_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, OSError)


class DamagedCheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read: damaged, incomplete, or not a checkpoint."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint loads, but its tensors do not fit the model (another method, size, classes)."""


def describe_incompatible(path: str, incompatible) -> str:
    """One message for a checkpoint whose tensors do not fit the model: counts, then a few names."""
    shapes = list(incompatible.incorrect_shapes)
    # detectron2 drops the tensors of another shape before loading, so they come back as missing too
    reshaped = {name for name, _, _ in shapes}
    missing = [name for name in incompatible.missing_keys if name not in reshaped]
    unexpected = list(incompatible.unexpected_keys)
    parts = [
        f"{len(missing)} model tensor(s) missing from the checkpoint",
        f"{len(unexpected)} checkpoint tensor(s) the model does not have",
        f"{len(shapes)} with another shape",
    ]
    examples = [f"missing {name}" for name in missing[:3]]
    examples += [f"unexpected {name}" for name in unexpected[:3]]
    examples += [f"{name}: checkpoint {tuple(a)} vs model {tuple(b)}" for name, a, b in shapes[:3]]
    return (
        f"{path} does not fit the model: {', '.join(parts)} (e.g. {'; '.join(examples)}). "
        "Is it a checkpoint of another method, backbone or class count than the config's?"
    )


def _describe_size(path: str) -> str:
    try:
        return f"{os.path.getsize(path):,} bytes"
    except OSError:
        return "size unknown"


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """See the module docstring. `strict_model=True` (evaluation, the demo) makes a checkpoint whose
    tensors do not all match the model a `CheckpointMismatchError`: a model of another method would
    otherwise run with random layers and draw nothing. Training (fine-tuning from a partial
    checkpoint) keeps detectron2's lists and adds a one-line warning with the counts."""

    def __init__(self, model, save_dir: str = "", *, strict_model: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.strict_model = strict_model
        self._loading = ""
        # Only the process that writes (rank 0) cleans; the lock test keeps a live writer's file
        # anyway.
        if self.save_dir and self.save_to_disk:
            self.remove_stale_temporary_files()

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        with atomic_open(save_file, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)
        self.remove_stale_temporary_files()

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

    def remove_stale_temporary_files(self) -> List[str]:
        """Remove temporary files of checkpoint writes in save_dir whose writer is gone (a killed
        job)."""
        removed = remove_stale_temporary_files(self.save_dir, _WRITTEN_PATTERNS)
        if removed:
            self.logger.warning(
                f"Removed {len(removed)} temporary file(s) of interrupted checkpoint writes in "
                f"{self.save_dir}: " + ", ".join(os.path.basename(p) for p in removed)
            )
        return removed

    # ------------------------------------------------------------------------------------ loading
    def load(self, path: str, *args, **kwargs) -> Dict[str, Any]:
        if not path:  # detectron2 would log "Loading from  ..." with the empty path
            self.logger.info("No MODEL.WEIGHTS: the model starts from its random initialisation")
            return {}
        self._loading = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            # detectron2 resets this only on success and asserts it is unset on the next load, which
            # would turn a second attempt after a damaged file into an AssertionError.
            self._parsed_url_during_load = None

    def _load_file(self, filename: str) -> Dict[str, Any]:
        try:
            return super()._load_file(filename)
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise  # these already name the file and are not about its content
        except _UNREADABLE_ERRORS as e:
            raise DamagedCheckpointError(
                f"Cannot read checkpoint {filename} ({_describe_size(filename)}): the file is "
                "damaged or "
                f"incomplete (e.g. a copy or download that did not finish), or not a checkpoint. "
                f"Reading it failed with {type(e).__name__}: {e}"
            ) from e

    def _load_model(self, checkpoint: Any):
        model = getattr(self.model, "module", self.model)  # DistributedDataParallel wraps the model
        adapt = getattr(model, "adapt_checkpoint_state_dict", None)
        if callable(adapt) and isinstance(checkpoint.get("model"), dict):
            checkpoint["model"] = adapt(checkpoint["model"])
        incompatible = super()._load_model(checkpoint)
        if incompatible is not None and (
            incompatible.missing_keys
            or incompatible.unexpected_keys
            or incompatible.incorrect_shapes
        ):
            message = describe_incompatible(self._loading, incompatible)
            if self.strict_model:
                raise CheckpointMismatchError(message)
            partial = "Training starts from a partial checkpoint; is it"
            self.logger.warning(message.replace("Is it", partial))
        return incompatible

    # ----------------------------------------------------------------------------------- resuming
    def resume_candidates(self) -> List[str]:
        """Checkpoints to resume from, in order: the file `last_checkpoint` names, then the other
        `model_*.pth` of save_dir, most recently written first (ties: higher iteration in the
        name)."""
        last = self.get_checkpoint_file()

        def newest_first(name: str) -> Tuple[float, int]:
            number = re.fullmatch(r"model_(\d+)\.pth", name)
            return (
                -os.path.getmtime(os.path.join(self.save_dir, name)),
                -int(number.group(1)) if number else 0,
            )

        others = sorted(
            (
                n
                for n in os.listdir(self.save_dir)
                if re.fullmatch(r"model_.+\.pth", n)
                and os.path.isfile(os.path.join(self.save_dir, n))
                and os.path.join(self.save_dir, n) != last
            ),
            key=newest_first,
        )
        return [last] + [os.path.join(self.save_dir, n) for n in others]

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """detectron2's resume_or_load, except when `last_checkpoint` names a damaged or missing
        file.

        Then the newest other `model_*.pth` in save_dir that loads is used, with a warning naming
        both files. If none loads, DamagedCheckpointError lists them: the run does not silently
        start over from MODEL.WEIGHTS (detectron2 does that only when there is no `last_checkpoint`
        at all; here the file says training got further, and starting over would overwrite its
        outputs).

        Every rank runs this on the same files, so every rank makes the same choice.
        """
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=resume)
        failures = []
        for candidate in self.resume_candidates():
            if not os.path.isfile(candidate):
                failures.append(f"{candidate} (missing)")
                self.logger.warning(
                    f"Resuming: {candidate}, named by last_checkpoint, does not exist"
                )
                continue
            try:
                checkpoint = self.load(candidate)
            except DamagedCheckpointError as e:
                failures.append(f"{candidate} ({_describe_size(candidate)}, damaged or incomplete)")
                self.logger.warning(f"Resuming: {e}")
                continue
            if failures:
                self.logger.warning(
                    f"Resumed from {candidate}: {failures[0]}, which last_checkpoint names, cannot "
                    "be loaded"
                    + (f"; neither can {'; '.join(failures[1:])}" if failures[1:] else "")
                )
            return checkpoint
        raise DamagedCheckpointError(
            f"Cannot resume from {self.save_dir}: no checkpoint there can be loaded: "
            f"{'; '.join(failures)}. "
            "Move them away (with last_checkpoint) to train from MODEL.WEIGHTS again, or run "
            f"without --resume and set MODEL.WEIGHTS to the weights to start from."
        )
