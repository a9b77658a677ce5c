"""detectron2 DatasetEvaluator for YouTube-VIS / OVIS: writes the submission, scores when GT
exists."""

import contextlib
import itertools
import json
import logging
import os
import re
from collections import OrderedDict
from typing import Mapping, Optional

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from .results import (
    ResultsJsonWriter,
    invert_id_map,
    load_results_file,
    video_output_entries,
    write_results,
    write_results_zip,
)
from vis_zoo.utils.io import atomic_open

from .ytvis_metric import evaluate_ytvis, format_results_table, gc_paused

__all__ = ["YTVISEvaluator"]

# A results part of one process (`YTVISEvaluator` in a distributed run).
_PART_NAME = re.compile(r"results\.(part|received)\d+\.json")


def _is_part(path: str, size: int) -> bool:
    """Whether `path` is here with the `size` its process wrote (not another run's file)."""
    return os.path.isfile(path) and os.path.getsize(path) == size


class YTVISEvaluator(DatasetEvaluator):
    """Collects one results entry per predicted track, writes `results.json` + `results.zip` (the
    CodaLab submission) into `output_dir`, and scores them with our YouTube-VIS / OVIS metric when
    the dataset's GT JSON (`metadata.json_file`) has annotations.

    With an `output_dir`, entries go to disk as each video is processed. In a distributed run each
    process writes its own part, `results.part<rank>.json`, and the main process joins the parts
    in rank order into `results.json` (as text, block by block) and removes them; no process
    gathers masks of other processes through `comm.gather`. When the main process cannot read a
    part (the run spans machines and `output_dir` is not on a shared file system), that part's
    text is sent to it over the process group instead, one part at a time, with a warning.
    Without an `output_dir` the predictions of every process are gathered in the main one.

    `evaluate()` returns OrderedDict(segm={"AP": .., "AP50": .., ..., "AP-<class>": ..}) in percent
    (detectron2 convention; nan where undefined), or {} when no local score is possible.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        ovis: Optional[bool] = None,
        *,
        results_only: bool = False,
        workers: int = 1,
    ):
        """
        Args:
            dataset_name: a registered dataset; its metadata gives json_file, evaluator_type and
                thing_dataset_id_to_contiguous_id.
            output_dir: where results.json / results.zip are written (nothing written when None).
            distributed: gather predictions from all processes; only the main one writes and scores.
            ovis: report the OVIS occlusion APs/ARs; None = metadata.evaluator_type == "ovis"
                (a non-OVIS dataset still gets them if its GT carries occlusion labels).
            results_only: only write the results files, never score (e.g. for a test split whose
                GT has no annotations, to submit to the evaluation server).
            workers: processes for the mask work of the metric (the same core as tools/evaluate.py);
                1 by default: forking a training process (CUDA context, data-loader threads) is not
                worth the risk for a step that takes seconds.
        """
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._metadata = MetadataCatalog.get(dataset_name)
        self._output_dir = output_dir
        self._distributed = distributed
        self._results_only = results_only
        self._workers = int(workers)
        if ovis is None:
            ovis = self._metadata.get("evaluator_type", "ytvis") == "ovis"
        self._ovis = bool(ovis)
        id_map = self._metadata.get("thing_dataset_id_to_contiguous_id", None)
        self._contiguous_to_dataset_id = invert_id_map(id_map) if id_map else None
        self._json_file = self._metadata.get("json_file", None)
        self._predictions = []
        self._writer: Optional[ResultsJsonWriter] = None

    def _streams_results(self) -> bool:
        """One process writing its results file: entries go to disk as each video is processed
        (a long video's masks are never all in memory), and are kept only when they are scored."""
        return bool(self._output_dir) and (not self._distributed or comm.get_world_size() == 1)

    def _writes_parts(self) -> bool:
        """Several processes, each writing its part of the results file as its videos are
        processed; nothing is kept in memory (the main process reads the joined file to score)."""
        return bool(self._output_dir) and self._distributed and comm.get_world_size() > 1

    def _part_path(self, rank: int) -> str:
        return os.path.join(self._output_dir, f"results.part{rank}.json")

    def reset(self):
        self._predictions = []
        if self._writer is not None:
            self._writer.abort()
        self._writer = None
        if self._streams_results():
            self._writer = ResultsJsonWriter(os.path.join(self._output_dir, "results.json"))
        elif self._writes_parts():
            # A part left by an interrupted earlier run must never be taken for this run's: it
            # goes now, and this run's part appears (atomically) only when it is complete.
            path = self._part_path(comm.get_rank())
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            self._writer = ResultsJsonWriter(path)

    def process(self, inputs, outputs):
        """inputs: test-mapper dicts (video_id, height, width, length); outputs: one model output
        dict per input (a single dict is accepted when there is one input)."""
        if isinstance(outputs, Mapping):
            outputs = [outputs]
        if len(outputs) != len(inputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} model outputs")
        for inp, out in zip(inputs, outputs):
            video_id = inp["video_id"]
            for key in ("height", "width"):
                if key not in inp:
                    raise ValueError(f"video {video_id}: input has no '{key}'")
            length = inp["length"] if "length" in inp else len(inp["file_names"])
            entries = video_output_entries(
                video_id,
                out,
                length=int(length),
                height=int(inp["height"]),
                width=int(inp["width"]),
                contiguous_to_dataset_id=self._contiguous_to_dataset_id,
            )
            for entry in entries:
                if self._writer is not None and (self._results_only or self._writes_parts()):
                    self._writer.write_entry(entry)  # frame by frame, nothing kept
                    continue
                entry["segmentations"] = list(entry["segmentations"])
                if self._writer is not None:
                    self._writer.write_entry(entry)
                self._predictions.append(entry)

    def evaluate(self):
        if self._writer is not None and self._writes_parts():
            json_path = self._join_parts()
            if json_path is None:
                return {}
            if self._results_only:
                self._logger.info("results_only: not scoring %s.", self._dataset_name)
                return {}
            # The metric needs the whole list; only the main process reads it, from the file.
            return self._score(load_results_file(json_path))
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(self._predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = list(itertools.chain(*gathered))
        else:
            predictions = self._predictions

        if self._writer is not None:
            count, json_path = self._writer.entries, self._writer.close()
            self._writer = None
            zip_path = write_results_zip(json_path, os.path.join(self._output_dir, "results.zip"))
            self._logger.info(
                "Wrote %d predicted tracks to %s and the submission %s", count, json_path, zip_path
            )
        elif self._output_dir:
            json_path, zip_path = write_results(predictions, self._output_dir)
            self._logger.info(
                "Wrote %d predicted tracks to %s and the submission %s",
                len(predictions),
                json_path,
                zip_path,
            )
        if self._results_only:
            self._logger.info("results_only: not scoring %s.", self._dataset_name)
            return {}
        return self._score(predictions)

    def _join_parts(self) -> Optional[str]:
        """Close this process's part; in the main process, join every part into `results.json`,
        write `results.zip` and remove the parts. Returns the results.json path in the main
        process, None in the others."""
        count, part = self._writer.entries, self._writer.close()
        self._writer = None
        # Written before the barrier, so every part is complete when the main process reads it;
        # the sizes let it refuse a file that is not the one its process wrote in this run.
        written = (part, count, os.path.getsize(part))
        comm.synchronize()
        parts = comm.gather(written, dst=0)  # paths and counts only, never masks
        main = comm.is_main_process()
        unseen = None
        if main:
            unseen = [r for r, (path, _, size) in enumerate(parts) if not _is_part(path, size)]
        unseen = comm.all_gather(unseen)[0]  # the main process's list, to every process
        for rank in unseen:
            # The main process cannot read this part (an output folder that is not shared between
            # machines): its process sends the text instead, one part in flight at a time.
            text = None
            if comm.get_rank() == rank:
                with open(part, "r", encoding="utf-8") as f:
                    text = f.read()
            received = comm.gather(text, dst=0)
            if comm.get_rank() == rank and not main:
                os.remove(part)
            if main:
                path, entries, _ = parts[rank]
                # Not the part's own name: on a file system that is shared after all (a stale
                # size seen through a cache) its process is removing that file right now.
                local = os.path.join(self._output_dir, f"results.received{rank}.json")
                self._logger.warning(
                    "Results part %s of process %d is not readable here (is the output folder "
                    "%s shared by every process?): it was sent over the process group instead.",
                    path,
                    rank,
                    self._output_dir,
                )
                with atomic_open(local, "w") as f:  # JSON text of RLEs and numbers: ASCII
                    f.write(received[rank])
                parts[rank] = (local, entries, os.path.getsize(local))
        if not main:
            return None
        json_path = os.path.join(self._output_dir, "results.json")
        with ResultsJsonWriter(json_path) as writer:
            for path, entries, _ in parts:  # rank order
                writer.copy_entries_from(path, entries)
        zip_path = write_results_zip(json_path, os.path.join(self._output_dir, "results.zip"))
        for path, _, _ in parts:
            os.remove(path)
        # Parts of processes this run does not have, left by an interrupted larger run.
        for name in os.listdir(self._output_dir):
            if _PART_NAME.fullmatch(name):
                os.remove(os.path.join(self._output_dir, name))
        self._logger.info(
            "Wrote %d predicted tracks to %s and the submission %s",
            writer.entries,
            json_path,
            zip_path,
        )
        return json_path

    def _score(self, predictions):
        gt_json = self._load_gt()
        if gt_json is None or not gt_json.get("annotations"):
            self._logger.warning(
                "%s has no ground-truth annotations%s: no local score is possible. "
                "The results file is written for server submission (%s).",
                self._dataset_name,
                f" in {self._json_file}" if self._json_file else "",
                os.path.join(self._output_dir, "results.zip")
                if self._output_dir
                else "no output_dir given",
            )
            return {}
        # A non-OVIS dataset still gets the occlusion numbers when its GT has occlusion labels.
        result = evaluate_ytvis(
            gt_json, predictions, ovis=True if self._ovis else None, workers=self._workers
        )
        self._logger.info(
            "Evaluation results for %s (segm):\n%s",
            self._dataset_name,
            format_results_table(result),
        )
        return OrderedDict(segm=result.as_percentages())

    def _load_gt(self):
        if not self._json_file:
            return None
        try:
            with open(self._json_file, "r", encoding="utf-8") as f, gc_paused():
                return json.load(f)
        except FileNotFoundError:
            raise ValueError(
                f"GT JSON {self._json_file!r} of dataset {self._dataset_name} does not exist"
            ) from None
        except json.JSONDecodeError as e:
            raise ValueError(
                f"GT JSON {self._json_file!r} of dataset {self._dataset_name} is corrupt: {e}"
            ) from None
