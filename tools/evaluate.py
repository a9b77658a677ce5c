#!/usr/bin/env python
"""Score a YouTube-VIS / OVIS results file against a GT JSON, without any model.

    python tools/evaluate.py GT.json results.json [--ovis]

`results` may be the results.json list or the submission results.zip. Prints the summary table, then
one final line with a JSON object of the numbers in percent (detectron2 convention; null where
undefined, e.g. APl when no GT track is large).
"""
import argparse
import json
import logging
import math
import os
import sys

from vis_zoo.evaluation import evaluate_ytvis, format_results_table, load_results_file


def _load_gt(path: str) -> dict:
    if not os.path.isfile(path):
        raise ValueError(f"GT JSON {path!r} does not exist")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"GT JSON {path!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"GT JSON {path!r} must hold an object with videos/categories/annotations")
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gt_json", help="YouTube-VIS / OVIS annotation JSON with annotations")
    parser.add_argument("results", help="results.json (list of predicted tracks) or results.zip")
    parser.add_argument("--ovis", action="store_true",
                        help="report the OVIS occlusion APs/ARs (automatic when the GT has occlusion labels)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        gt = _load_gt(args.gt_json)
        results = load_results_file(args.results)
        if not gt.get("annotations"):
            raise ValueError(
                f"GT JSON {args.gt_json!r} has no annotations (a valid/test split): no local score is "
                "possible; submit the results.zip to the evaluation server"
            )
        result = evaluate_ytvis(gt, results, ovis=True if args.ovis else None)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_results_table(result))
    numbers = {k: (None if math.isnan(v) else round(v, 6)) for k, v in result.as_percentages().items()}
    print(json.dumps(numbers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
