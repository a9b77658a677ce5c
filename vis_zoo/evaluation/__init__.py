"""YouTube-VIS / OVIS evaluation: our implementation of the reference metric, the detectron2
evaluator, and the helpers that turn model outputs into the submission file."""

from .results import (
    encode_track_masks,
    invert_id_map,
    load_results_file,
    ResultsJsonWriter,
    rle_to_json,
    video_output_entries,
    video_output_to_results,
    write_results,
    write_results_zip,
)
from .ytvis_evaluation import YTVISEvaluator
from .ytvis_metric import (
    OCCLUSION_STAT_NAMES,
    STAT_NAMES,
    YTVISResult,
    evaluate_ytvis,
    format_results_table,
    track_ious,
    track_occlusion_score,
)

__all__ = [
    "YTVISEvaluator",
    "YTVISResult",
    "STAT_NAMES",
    "OCCLUSION_STAT_NAMES",
    "evaluate_ytvis",
    "format_results_table",
    "track_ious",
    "track_occlusion_score",
    "encode_track_masks",
    "invert_id_map",
    "load_results_file",
    "rle_to_json",
    "video_output_to_results",
    "video_output_entries",
    "ResultsJsonWriter",
    "write_results",
    "write_results_zip",
]
