#!/usr/bin/env python
"""Score a YouTube-VIS / OVIS results file against a GT JSON, without any model.

    python tools/evaluate.py GT.json results.json [--ovis] [--workers 2] [--timings]

`results` may be the results.json list or the submission results.zip. Prints the summary table, then
one final line with a JSON object of the numbers in percent (detectron2 convention; null where
undefined, e.g. APl when no GT track is large).

Only numpy and pycocotools are imported: the metric module is loaded on its own, without
the `vis_zoo` package (whose import registers the datasets with detectron2 and so loads torch,
~2 s and ~550 MB before any work).
"""

import time

_T_START = time.perf_counter()  # before the imports: --timings reports them

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

METRIC_MODULE = "vis_zoo.evaluation.ytvis_metric"


def load_metric():
    """The metric module (numpy + pycocotools only).

    Already imported (e.g. by a test or a training process)? Use it. Otherwise locate the installed
    `vis_zoo` package without running its `__init__` and execute `evaluation/ytvis_metric.py` alone,
    under a private name."""
    if METRIC_MODULE in sys.modules:
        return sys.modules[METRIC_MODULE]
    spec = importlib.util.find_spec("vis_zoo")  # locates the package; runs nothing
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("vis_zoo is not installed (pip install -e . in the repository root)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "evaluation", "ytvis_metric.py")
    name = "_vis_zoo_ytvis_metric_standalone"
    if name not in sys.modules:
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        module_spec.loader.exec_module(module)
    return sys.modules[name]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("gt_json", help="YouTube-VIS / OVIS annotation JSON with annotations")
    parser.add_argument("results", help="results.json (list of predicted tracks) or results.zip")
    parser.add_argument(
        "--ovis",
        action="store_true",
        help="report the OVIS occlusion APs/ARs (automatic when the GT has occlusion labels)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes for the mask work (default: 2 where there are 2 CPUs)",
    )
    parser.add_argument(
        "--timings",
        action="store_true",
        help="print to stderr a JSON line with the seconds spent importing, parsing and scoring "
        "(wall), and the CPU seconds of this process and of its worker",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    metric = load_metric()
    t_imported = time.perf_counter()
    # The helper process is forked now, before the files are parsed, so that it shares nothing
    # but the imported modules with this one (see Worker).
    worker = metric.Worker() if args.workers > 1 and hasattr(os, "fork") else None
    try:
        with metric.gc_paused():  # json.load of large files runs ~40% faster without it
            gt = metric.load_gt_file(args.gt_json)
            results = metric.load_results_file(args.results)
        t_parsed = time.perf_counter()
        if not gt.get("videos"):
            raise ValueError(
                f"GT JSON {args.gt_json!r} has no videos (its 'videos' list is empty or missing): "
                "there is nothing to score"
            )
        if not gt.get("annotations"):
            raise ValueError(
                f"GT JSON {args.gt_json!r} has no annotations (a valid/test split): no local "
                "score is possible; submit the results.zip to the evaluation server"
            )
        result = metric.evaluate_ytvis(gt, results, ovis=True if args.ovis else None, worker=worker)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if worker is not None:
            worker.close()
    print(metric.format_results_table(result))
    numbers = {
        k: (None if math.isnan(v) else round(v, 6)) for k, v in result.as_percentages().items()
    }
    print(json.dumps(numbers), flush=True)
    if args.timings:
        t_end = time.perf_counter()
        own, helper = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        print(
            json.dumps(
                {
                    "import_s": t_imported - _T_START,
                    "parse_s": t_parsed - t_imported,
                    "after_parse_s": t_end - t_parsed,
                    "cpu_s": own.ru_utime + own.ru_stime,
                    "worker_cpu_s": helper.ru_utime + helper.ru_stime,
                }
            ),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
