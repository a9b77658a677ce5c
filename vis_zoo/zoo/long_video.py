"""The "long_video" benchmark stage: peak memory and time per frame of one call on long videos.

Each point (H, W, T) is one fresh process (`vis_zoo.zoo.speed`, one call, no warm-up: a second
call of a 10,000-frame video would double an hours-long measurement) on a random video whose
frames are made as the model reads them, so the peak resident memory is the model's own and not
its input's. A row's result:

    row["long_video"] = {"points": [{"height", "width", "frames", "peak_gb", "seconds",
                                     "ms_per_frame", "load_avg_1min"} or {..., "error"}]}

A point measured with config overrides (KEY VALUE, e.g. MODEL.VIS.TEST_FEATURE_STORE disk) also
has "opts": [KEY, VALUE, ...]; the table marks its cells and lists the overrides under the table,
so that a point measured off the config's defaults never passes for one measured on them.

`long_video_table` renders the rows as the markdown table of MODEL_ZOO.md (peak memory per T and
its growth from the smallest to the largest T, per size) and `plot_long_video_memory` draws peak
memory against frames.
"""

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "LONG_VIDEO_POINTS",
    "QUICK_LONG_VIDEO_POINTS",
    "measure_long_video",
    "long_video_table",
    "plot_long_video_memory",
]

# (H, W, T): 180x320 up to 10,000 frames (flatness), 360x640 up to 1,000 (the YouTube-VIS size)
LONG_VIDEO_POINTS: Tuple[Tuple[int, int, int], ...] = (
    (180, 320, 100),
    (180, 320, 1000),
    (180, 320, 10000),
    (360, 640, 100),
    (360, 640, 1000),
)
QUICK_LONG_VIDEO_POINTS: Tuple[Tuple[int, int, int], ...] = ((64, 96, 4), (64, 96, 16))


def measure_long_video(
    config_file: str,
    points: Sequence[Tuple[int, int, int]],
    *,
    device: str,
    threads: int,
    opts: Sequence[str] = (),
    timeout_s: float = 24 * 3600,
    step: Optional[Callable[[str], None]] = None,
) -> Dict[str, List[dict]]:
    """Every (H, W, T) point in its own process; a failed or timed-out point is an error entry
    and the others still run (the short ones first, so a long run that does not finish leaves
    the rest measured)."""
    from vis_zoo.zoo.child import short_error
    from vis_zoo.zoo.speed import measure_speed_in_subprocess

    out = []
    for height, width, frames in sorted(points, key=lambda p: (p[2] * p[0] * p[1], p)):
        point = {"height": height, "width": width, "frames": frames}
        if opts:
            point["opts"] = list(opts)
        if step is not None:
            step(f"long video {height}x{width}, T={frames}")
        try:
            r = measure_speed_in_subprocess(
                config_file,
                frames,
                height,
                width,
                threads=threads,
                repeats=1,
                opts=["MODEL.DEVICE", device, *opts],
                timeout=timeout_s,
                warmup=False,
            )
            point.update(
                {
                    "peak_gb": r.peak_cuda_gb if r.peak_cuda_gb is not None else r.peak_rss_gb,
                    "peak_rss_gb": r.peak_rss_gb,
                    "seconds": r.median_s,
                    "ms_per_frame": 1000 * r.median_s / frames,
                    "load_avg_1min": r.load_avg_1min,
                }
            )
        except Exception as e:  # subprocess failure, timeout, out of memory: keep the others
            point["error"] = short_error(e)[-400:]
        out.append(point)
    return {"points": out}


def _sizes(rows: Sequence[dict]) -> List[Tuple[int, int]]:
    return sorted({(p["height"], p["width"]) for r in rows for p in r["long_video"]["points"]})


def _peak_cell(point: Optional[dict], marks: Dict[Tuple[str, ...], str]) -> str:
    if point is None:
        return "not run"
    if "error" not in point:
        return f"{point['peak_gb']:.2f}" + _override_mark(point, marks)
    return "timed out" if "timed out" in point["error"].lower() else "failed"


def _override_mark(point: dict, marks: Dict[Tuple[str, ...], str]) -> str:
    """The mark of the point's config overrides ("" without any); a new set of overrides gets the
    next mark (†, ††, ...) in `marks` (not "*": two would start bold text in markdown)."""
    opts = tuple(point.get("opts") or ())
    if not opts:
        return ""
    return marks.setdefault(opts, "†" * (len(marks) + 1))


def long_video_table(rows: Sequence[dict], name: Callable[[dict], str]) -> str:
    """Markdown: per row and size, peak memory (GB) at each T, ms per frame at each T, and the
    growth of the peak from the smallest to the largest T measured. `name(row)` labels a row."""
    rows = [r for r in rows if r.get("long_video", {}).get("points")]
    if not rows:
        return ""
    lines = []
    marks: Dict[Tuple[str, ...], str] = {}  # config overrides of marked points -> their mark
    for height, width in _sizes(rows):
        frames = sorted(
            {
                p["frames"]
                for r in rows
                for p in r["long_video"]["points"]
                if (p["height"], p["width"]) == (height, width)
            }
        )
        head = [
            "method",
            *[f"peak GB, T={t:,}" for t in frames],
            "growth",
            *[f"ms/frame, T={t:,}" for t in frames],
            "load avg",
        ]
        lines += [
            f"**{height}x{width}**",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for r in rows:
            points = {
                p["frames"]: p
                for p in r["long_video"]["points"]
                if (p["height"], p["width"]) == (height, width)
            }
            if not points:
                continue
            measured = [points[t] for t in frames if t in points and "error" not in points[t]]
            peak = [_peak_cell(points.get(t), marks) for t in frames]
            speed = [
                f"{points[t]['ms_per_frame']:.0f}" + _override_mark(points[t], marks)
                if t in points and "error" not in points[t]
                else ""
                for t in frames
            ]
            growth = ""
            if len(measured) >= 2:
                percent = round(100 * (measured[-1]["peak_gb"] / measured[0]["peak_gb"] - 1))
                growth = f"{percent:+d}%" if percent else "0%"  # not "-0%" for a tiny drop
            loads = [f"{v:.1f}" for v in sorted({p["load_avg_1min"] for p in measured})]
            lines.append(
                "| "
                + " | ".join(
                    [
                        name(r),
                        *peak,
                        growth,
                        *speed,
                        "–".join([loads[0], loads[-1]] if len(loads) > 1 else loads),
                    ]
                )
                + " |"
            )
        lines.append("")
    for opts, mark in marks.items():
        pairs = ", ".join(f"`{k} {v}`" for k, v in zip(opts[::2], opts[1::2]))
        lines += [f"{mark} measured with the config overrides {pairs}.", ""]
    return "\n".join(lines)


def plot_long_video_memory(
    rows: Sequence[dict], path: str, name: Callable[[dict], str]
) -> Optional[str]:
    """Peak memory against frames (log x), one panel per frame size, one line per row."""
    rows = [
        r for r in rows if any("error" not in p for p in r.get("long_video", {}).get("points", []))
    ]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    sizes = sorted(
        {
            (p["height"], p["width"])
            for r in rows
            for p in r["long_video"]["points"]
            if "error" not in p
        }
    )
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
    # one colour per row in every panel, so that a method keeps its colour across frame sizes
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {r["key"]: palette[i % len(palette)] for i, r in enumerate(rows)}
    for ax, (height, width) in zip(axes[0], sizes):
        for r in rows:
            pts = sorted(
                (
                    p
                    for p in r["long_video"]["points"]
                    if (p["height"], p["width"]) == (height, width) and "error" not in p
                ),
                key=lambda p: p["frames"],
            )
            if pts:
                ax.plot(
                    [p["frames"] for p in pts],
                    [p["peak_gb"] for p in pts],
                    marker="o",
                    color=colors[r["key"]],
                    label=name(r),
                )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("frames per video (T)")
        ax.set_ylabel("peak memory (GB)")
        ax.set_title(f"{height}x{width}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Peak memory of one model call versus video length (random weights)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
