#!/usr/bin/env python
"""Time `tools/evaluate.py` against the reference YouTube-VIS scorer on real-sized synthetic files.

    python tools/benchmark_evaluator.py --reference-root /path/to/youtubevos-cocoapi [--repeats 3]

Generates (by seed) two cases the size of the public validation sets and writes their GT JSON and
results JSON to --workdir (a case already there from the same seed and sizes is reused):

* ``ytvis``: YouTube-VIS 2019 valid-sized: 302 videos of 20-40 frames (30 on average) at 360x640,
  761 GT tracks, 10 predicted tracks per video, 40 categories;
* ``ovis``: OVIS valid-sized: 140 videos of 30-90 frames (60 on average) at 720x1280, 788 GT tracks
  with per-frame occlusion labels, 1,400 predicted tracks, 25 categories.

Masks are moving ellipses with ragged edges (about as many runs per frame as real object masks);
predictions are noisy copies of GT tracks (some with the wrong category) and background tracks.

Each scorer runs as a fresh process, `--repeats` times (the fastest run is reported), our command
``python tools/evaluate.py GT results --timings`` alternating with the reference (``ytvos.py`` +
``ytvoseval.py`` of the YouTube-VIS fork of the COCO API, https://github.com/youtubevos/cocoapi,
taken from ``--reference-root``, a local checkout that is never part of this repository).
Reported per scorer: the wall time from process start to exit (the table is printed last), the CPU
time (user + system, worker processes included), the time spent after both JSON files are parsed
(each scorer measures it itself), the peak RSS of the largest process (``ru_maxrss``, what
``/usr/bin/time`` shows) and, from one more run that samples ``/proc/<pid>/smaps_rollup`` every
2 ms, the peak proportional set size of the whole process tree: the memory really held, a forked
worker's shared pages counted once. The 12 numbers of both scorers must agree to 1e-6 (exit
status 1 otherwise).

The reference predates NumPy 1.18 and Python 3: it is run with ``np.float = float`` and
``unicode = str`` defined and ``np.linspace`` accepting its float count, its ``pycocotools/_mask``
extension is taken from the installed pycocotools, and nothing else is changed.
"""

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_util

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVALUATE = os.path.join(REPO, "tools", "evaluate.py")


def _load_metric_module():
    """vis_zoo's metric module, loaded the way tools/evaluate.py loads it (numpy + pycocotools
    only, without importing torch)."""
    spec = importlib.util.spec_from_file_location("vis_zoo_evaluate_tool", EVALUATE)
    evaluate_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate_tool)
    return evaluate_tool.load_metric()


# The 12 summary numbers, in the order both scorers report them.
STAT_NAMES = _load_metric_module().STAT_NAMES
OCCLUSION_LABELS = ("no_occlusion", "slight_occlusion", "severe_occlusion")


@dataclass(frozen=True)
class CaseSpec:
    """Size of a generated case. frames: inclusive range of video lengths; size: (H, W)."""

    name: str
    videos: int
    frames: Tuple[int, int]
    size: Tuple[int, int]
    gt_tracks: int
    preds_per_video: int
    categories: int
    occlusion: bool


CASES = {
    "ytvis": CaseSpec("ytvis", 302, (20, 40), (360, 640), 761, 10, 40, False),
    "ovis": CaseSpec("ovis", 140, (30, 90), (720, 1280), 788, 10, 25, True),
}


def scaled(spec: CaseSpec, scale: float) -> CaseSpec:
    """The same case with `scale` times the videos and GT tracks (at least one of each per
    video)."""
    videos = max(1, int(round(spec.videos * scale)))
    return replace(spec, videos=videos, gt_tracks=max(videos, int(round(spec.gt_tracks * scale))))


# ----------------------------------------------------------------------------------------------
# Case generation: RLEs are built from the geometry (no full-frame masks), so a 100k-frame case
# takes seconds.
# ----------------------------------------------------------------------------------------------
def _ellipse_runs(
    rng, height: int, width: int, cy: float, cx: float, ry: float, rx: float
) -> List[int]:
    """Uncompressed column-major RLE counts of a filled ellipse with ±1 px ragged edges."""
    x0, x1 = max(0, int(np.ceil(cx - rx))), min(width - 1, int(np.floor(cx + rx)))
    if x1 < x0:
        return [height * width]
    xs = np.arange(x0, x1 + 1)
    half = ry * np.sqrt(np.clip(1.0 - ((xs - cx) / max(rx, 1e-6)) ** 2, 0.0, None))
    jitter = rng.integers(-1, 2, size=(2, len(xs)))
    y0 = np.clip(np.ceil(cy - half).astype(np.int64) + jitter[0], 0, height)
    y1 = np.clip(np.floor(cy + half).astype(np.int64) + 1 + jitter[1], 0, height)
    keep = y1 > y0
    if not keep.any():
        return [height * width]
    starts, ends = (xs * height + y0)[keep], (xs * height + y1)[keep]
    # Runs of adjacent columns that touch (object spans the full height) are one run.
    touching = np.flatnonzero(ends[:-1] == starts[1:])
    starts, ends = np.delete(starts, touching + 1), np.delete(ends, touching)
    bounds = np.empty(2 * len(starts) + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, height * width
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    runs = np.diff(bounds)
    return (
        runs[:-1] if runs[-1] == 0 else runs
    ).tolist()  # no empty run after the last object pixel


def _track(rng, length: int, height: int, width: int, present_prob: float, like=None):
    """One track's per-frame ellipses [(cy, cx, ry, rx) or None]; `like` = a track to copy
    noisily."""
    if like is None:
        ry = rng.uniform(0.05, 0.35) * height
        rx = rng.uniform(0.05, 0.3) * width
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        vy, vx = rng.normal(0, height / 200), rng.normal(0, width / 200)
        grow = rng.uniform(0.99, 1.01)
        frames = [(cy + vy * t, cx + vx * t, ry * grow**t, rx * grow**t) for t in range(length)]
    else:
        dy, dx = rng.normal(0, 0.05, size=2)
        sy, sx = rng.uniform(0.8, 1.2, size=2)
        frames = [
            None if f is None else (f[0] + dy * f[2], f[1] + dx * f[3], f[2] * sy, f[3] * sx)
            for f in like
        ]
    return [f if rng.random() < present_prob else None for f in frames]


def _encode_track(rng, frames, height: int, width: int):
    """Per-frame ellipses -> (compressed RLE dicts or None, areas or None), one pycocotools call."""
    runs = [None if f is None else _ellipse_runs(rng, height, width, *f) for f in frames]
    present = [t for t, r in enumerate(runs) if r is not None and len(r) > 1]
    segs: List[Optional[dict]] = [None] * len(frames)
    areas: List[Optional[int]] = [None] * len(frames)
    if present:
        rles = mask_util.frPyObjects(
            [{"counts": runs[t], "size": [height, width]} for t in present], height, width
        )
        for t, r, a in zip(present, rles, mask_util.area(rles)):
            segs[t] = {"size": [height, width], "counts": r["counts"].decode("ascii")}
            areas[t] = int(a)
    return segs, areas


def make_case(spec: CaseSpec, seed: int = 0) -> Tuple[dict, List[dict]]:
    """(GT JSON dict, results list) of the given size, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    height, width = spec.size
    cat_ids = [k + 1 for k in range(spec.categories)]
    categories = [{"id": c, "name": f"class{c}", "supercategory": "object"} for c in cat_ids]
    gt_per_video = 1 + rng.multinomial(
        spec.gt_tracks - spec.videos, np.ones(spec.videos) / spec.videos
    )
    videos, annotations, results = [], [], []
    for v in range(spec.videos):
        vid = v + 1
        length = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
        videos.append(
            {
                "id": vid,
                "height": height,
                "width": width,
                "length": length,
                "file_names": [f"{vid:05d}/{t:05d}.jpg" for t in range(length)],
            }
        )
        gts = []
        for _ in range(int(gt_per_video[v])):
            frames = _track(rng, length, height, width, present_prob=0.95)
            segs, areas = _encode_track(rng, frames, height, width)
            category = int(rng.choice(cat_ids))
            ann = {
                "id": len(annotations) + 1,
                "video_id": vid,
                "category_id": category,
                "iscrowd": 0,
                "segmentations": segs,
                "areas": areas,
                "bboxes": [None] * length,
                "height": height,
                "width": width,
                "length": length,
            }
            if spec.occlusion:
                ann["occlusion"] = [
                    None if s is None else str(rng.choice(OCCLUSION_LABELS, p=[0.4, 0.35, 0.25]))
                    for s in segs
                ]
            annotations.append(ann)
            gts.append((frames, category))
        for p in range(spec.preds_per_video):
            if p < 2 * len(gts) and rng.random() < 0.8:  # a noisy copy of a GT track
                like, category = gts[p % len(gts)]
                if rng.random() < 0.25:
                    category = int(rng.choice(cat_ids))
                frames = _track(rng, length, height, width, present_prob=0.97, like=like)
            else:
                category = int(rng.choice(cat_ids))
                frames = _track(rng, length, height, width, present_prob=0.9)
            segs, _ = _encode_track(rng, frames, height, width)
            results.append(
                {
                    "video_id": vid,
                    "category_id": category,
                    "score": float(rng.random()),
                    "segmentations": segs,
                }
            )
    return {"videos": videos, "categories": categories, "annotations": annotations}, results


def write_case(spec: CaseSpec, seed: int, workdir: str) -> Tuple[str, str]:
    """Generate a case and write `<name>_gt.json` / `<name>_results.json` into workdir.

    A case already there from the same spec and seed (recorded in `<name>_case.json`, written
    last) is kept as it is: a rerun in the same --workdir times the scorers without the minute of
    generation."""
    paths = (
        os.path.join(workdir, f"{spec.name}_gt.json"),
        os.path.join(workdir, f"{spec.name}_results.json"),
    )
    stamp_path = os.path.join(workdir, f"{spec.name}_case.json")
    stamp = {"seed": seed, "spec": json.loads(json.dumps(asdict(spec)))}
    try:
        with open(stamp_path, encoding="utf-8") as f:
            if json.load(f) == stamp and all(os.path.isfile(p) for p in paths):
                return paths
    except (OSError, ValueError):
        pass
    with contextlib.suppress(FileNotFoundError):
        os.remove(stamp_path)  # the files below change: the old stamp must not vouch for them
    gt, results = make_case(spec, seed)
    for path, data in zip(paths + (stamp_path,), (gt, results, stamp)):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)
    return paths


# ----------------------------------------------------------------------------------------------
# Running the scorers
# ----------------------------------------------------------------------------------------------
# The reference, run in a fresh interpreter: argv = reference root, GT path, results path. It prints
# one JSON line {"stats": [12 numbers], "after_parse_s": seconds} after the reference's own output.
REFERENCE_RUNNER = r"""
import builtins, json, os, sys, time
import numpy as np
np.float = float  # removed in NumPy 1.24; the reference still uses it
builtins.unicode = str  # Python 2 name tested by the reference's loadRes
_linspace = np.linspace  # NumPy >= 1.18 wants an integer count; the reference passes a float
np.linspace = lambda start, stop, num=50, **kw: _linspace(start, stop, int(num), **kw)
import pycocotools
# The reference's modules, with the compiled _mask of the installed pycocotools.
pycocotools.__path__.insert(0, os.path.join(sys.argv[1], "PythonAPI", "pycocotools"))
from pycocotools.ytvos import YTVOS
from pycocotools.ytvoseval import YTVOSeval
with open(sys.argv[2]) as f:
    gt_data = json.load(f)
with open(sys.argv[3]) as f:
    results = json.load(f)
t0 = time.perf_counter()
gt = YTVOS()
gt.dataset = gt_data
gt.createIndex()
dt = gt.loadRes(results)
ev = YTVOSeval(gt, dt, "segm")
ev.evaluate()
ev.accumulate()
ev.summarize()
sys.stdout.flush()
after_parse_s = time.perf_counter() - t0
print(json.dumps({"stats": [float(x) for x in ev.stats], "after_parse_s": after_parse_s}))
"""


@dataclass
class Run:
    wall_s: float  # process start to exit (the table is printed last)
    cpu_s: float  # user + system time of the process and any process it started
    after_parse_s: float  # the scorer's own time after both JSON files are parsed
    peak_rss_mb: float  # largest single process (ru_maxrss)
    stats: List[float]  # the 12 numbers as fractions
    peak_pss_mb: float = float("nan")  # whole process tree, from a separate sampled run


def _process_tree(pid: int) -> List[int]:
    """pid and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _tree_pss_kb(pid: int) -> int:
    """Proportional set size of a process tree: each shared page is split between the processes
    that share it, so a forked worker's copy-on-write pages are counted once."""
    total = 0
    for p in _process_tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def run_process(cmd: List[str], env: Optional[Dict[str, str]] = None, sample_memory: bool = False):
    """Run a command as a fresh process: (wall seconds, peak RSS MB, peak PSS MB or nan, stdout,
    stderr).

    Peak RSS: ru_maxrss from os.wait4, i.e. the largest single process of the tree (what
    /usr/bin/time reports). With sample_memory, the proportional set size of the whole process tree
    is also read every 2 ms (Linux): its peak is the memory the command really held, forked workers
    included (their shared pages counted once). Sampling costs CPU, so time without it."""
    peak_pss = [0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        usage = None
        if sample_memory and os.path.exists(f"/proc/{proc.pid}/smaps_rollup"):
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                peak_pss[0] = max(peak_pss[0], _tree_pss_kb(proc.pid))
                time.sleep(0.002)
        else:
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        shown = " ".join(c if len(c) < 200 else "<script>" for c in cmd)
        raise RuntimeError(f"{shown} failed with status {proc.returncode}:\n{stderr[-3000:]}")
    pss = peak_pss[0] / 1024.0 if peak_pss[0] else float("nan")
    return wall, usage.ru_maxrss / 1024.0, pss, usage.ru_utime + usage.ru_stime, stdout, stderr


def _last_json_line(text: str, what: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{what} printed no JSON line:\n{text[-2000:]}")


def ours_command(gt_path: str, results_path: str, workers: Optional[int] = None) -> List[str]:
    cmd = [sys.executable, EVALUATE, gt_path, results_path, "--timings"]
    return cmd + (["--workers", str(workers)] if workers else [])


def reference_command(reference_root: str, gt_path: str, results_path: str) -> List[str]:
    return [sys.executable, "-c", REFERENCE_RUNNER, reference_root, gt_path, results_path]


def parse_ours(out: str, err: str) -> Tuple[List[float], float]:
    """(the 12 numbers as fractions, seconds after parsing) from tools/evaluate.py --timings."""
    numbers = _last_json_line(out, "tools/evaluate.py")
    timings = _last_json_line(err, "tools/evaluate.py --timings")
    stats = [float("nan") if numbers[k] is None else numbers[k] / 100.0 for k in STAT_NAMES]
    return stats, timings["after_parse_s"]


def parse_reference(out: str, err: str) -> Tuple[List[float], float]:
    line = _last_json_line(out, "the reference scorer")
    return [float("nan") if x == -1 else float(x) for x in line["stats"][:12]], line[
        "after_parse_s"
    ]


def measure(cmd: List[str], parse, env: Dict[str, str], repeats: int) -> Run:
    """Fastest of `repeats` timed runs, then one run sampling the memory of the process tree."""
    runs = []
    for _ in range(repeats):
        wall, rss, _, cpu, out, err = run_process(cmd, env)
        stats, after = parse(out, err)
        runs.append(Run(wall, cpu, after, rss, stats))
    best = min(runs, key=lambda r: r.wall_s)
    best.cpu_s = min(r.cpu_s for r in runs)
    best.after_parse_s = min(r.after_parse_s for r in runs)
    best.peak_rss_mb = max(r.peak_rss_mb for r in runs)
    _, rss, pss, _, _, _ = run_process(cmd, env, sample_memory=True)
    best.peak_rss_mb, best.peak_pss_mb = max(best.peak_rss_mb, rss), pss
    return best


def max_stat_difference(a: List[float], b: List[float]) -> float:
    """Largest |a - b| over the 12 numbers; undefined (nan) must be undefined in both (else inf)."""
    worst = 0.0
    for x, y in zip(a, b):
        if np.isnan(x) or np.isnan(y):
            if np.isnan(x) != np.isnan(y):
                return float("inf")
            continue
        worst = max(worst, abs(x - y))
    return worst


def format_table(rows: List[dict]) -> str:
    """Markdown table of the benchmark rows (one per case and scorer)."""
    lines = [
        "| case | scorer | wall s | CPU s | after parsing s | peak RSS MB | peak PSS MB (all "
        "processes) "
        "| faster: wall / CPU / after parsing |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['scorer']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
            f"{r['after_parse_s']:.3f} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_pss_mb']:.0f} | {r.get('speedup', '')} |"
        )
    return "\n".join(lines)


def benchmark(
    cases: List[CaseSpec],
    seed: int,
    workdir: str,
    reference_root: Optional[str],
    repeats: int = 1,
    threads: int = 1,
    workers: Optional[int] = None,
    log=print,
) -> Tuple[List[dict], bool]:
    """Generate every case, time our command (and the reference when given), compare the numbers.

    Returns (table rows, whether every comparison agreed to 1e-6)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    rows, agree = [], True
    for spec in cases:
        t0 = time.perf_counter()
        gt_path, res_path = write_case(spec, seed, workdir)
        log(
            f"{spec.name}: {spec.videos} videos, {spec.gt_tracks} GT tracks, "
            f"{spec.videos * spec.preds_per_video} predicted tracks, "
            f"{spec.size[0]}x{spec.size[1]}; ready in {time.perf_counter() - t0:.1f} s "
            f"({os.path.getsize(gt_path) / 1e6:.1f} + {os.path.getsize(res_path) / 1e6:.1f} MB)"
        )
        ours = measure(ours_command(gt_path, res_path, workers), parse_ours, env, repeats)
        row = {"case": spec.name, "scorer": "tools/evaluate.py", **vars(ours)}
        rows.append(row)
        if reference_root:
            ref = measure(
                reference_command(reference_root, gt_path, res_path), parse_reference, env, repeats
            )
            diff = max_stat_difference(ours.stats, ref.stats)
            agree &= diff <= 1e-6
            row["speedup"] = (
                f"{ref.wall_s / ours.wall_s:.1f}x / {ref.cpu_s / ours.cpu_s:.1f}x / "
                f"{ref.after_parse_s / ours.after_parse_s:.1f}x"
            )
            row["max_abs_diff"] = diff
            rows.append({"case": spec.name, "scorer": "reference ytvoseval", **vars(ref)})
            log(f"{spec.name}: max |difference| of the 12 numbers = {diff:.2g}")
    return rows, agree


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reference-root",
        help="local checkout of github.com/youtubevos/cocoapi "
        "(holds PythonAPI/pycocotools/ytvoseval.py); without it only ours is timed",
    )
    parser.add_argument(
        "--cases", default="ytvis,ovis", help="comma-separated: " + ", ".join(CASES)
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="scale the number of videos and GT tracks"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per scorer; the fastest is reported"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="OMP/BLAS threads of each scorer process"
    )
    parser.add_argument(
        "--workers", type=int, help="tools/evaluate.py --workers (default: its own default)"
    )
    parser.add_argument(
        "--workdir", help="where the generated files go (default: a temporary folder)"
    )
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {sorted(CASES)}")
    if args.reference_root and not os.path.isfile(
        os.path.join(args.reference_root, "PythonAPI", "pycocotools", "ytvoseval.py")
    ):
        parser.error(
            f"--reference-root {args.reference_root!r} has no PythonAPI/pycocotools/ytvoseval.py"
        )
    cases = [scaled(CASES[n], args.scale) for n in names]
    with tempfile.TemporaryDirectory(prefix="vis_zoo_eval_bench_") as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        rows, agree = benchmark(
            cases, args.seed, workdir, args.reference_root, args.repeats, args.threads, args.workers
        )
    print()
    print(
        f"{datetime.date.today().isoformat()}, {_cpu_name()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}, "
        f"{args.threads} BLAS thread(s) per scorer"
    )
    print(format_table(rows))
    if args.json:
        with open(args.json + ".tmp", "w", encoding="utf-8") as f:
            json.dump([{k: v for k, v in r.items() if k != "stats"} for r in rows], f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    if args.reference_root:
        print(f"\nthe 12 numbers agree (|difference| <= 1e-6): {agree}")
        return 0 if agree else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
