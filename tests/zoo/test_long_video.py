"""The "long_video" benchmark stage: its points, the table of MODEL_ZOO.md and the plot."""

import subprocess

import pytest

from vis_zoo.zoo import long_video
from vis_zoo.zoo.benchmark import OPT_IN_STAGES, STAGES, BenchmarkSettings, count_steps
from vis_zoo.zoo.speed import SpeedResult
from vis_zoo.zoo.table import display_name, plot_long_video, render_table


def _fake_measurement(calls):
    def measure(config_file, frames, height, width, *, threads, repeats, opts, timeout, warmup):
        calls.append((height, width, frames, warmup, repeats))
        if frames == 10000:
            raise RuntimeError("speed measurement failed (exit -9): killed")
        if (height, frames) == (360, 1000):
            raise subprocess.TimeoutExpired(["python"], 60)
        peak = 1.0 + frames * 1e-5 + height * width * 1e-6
        return SpeedResult(
            config_file,
            frames,
            height,
            width,
            threads,
            frames / (0.5 * frames),
            0.5 * frames,
            [0.5 * frames],
            peak,
            None,
            "cpu",
            3.0,
        )

    return measure


def test_points_run_short_first_without_warm_up_and_a_failure_keeps_the_others(monkeypatch):
    calls = []
    monkeypatch.setattr("vis_zoo.zoo.speed.measure_speed_in_subprocess", _fake_measurement(calls))
    result = long_video.measure_long_video(
        "configs/ifc/ytvis19_R50.yaml", long_video.LONG_VIDEO_POINTS, device="cpu", threads=1
    )
    assert [c[:3] for c in calls] == [
        (180, 320, 100),
        (360, 640, 100),
        (180, 320, 1000),
        (360, 640, 1000),
        (180, 320, 10000),
    ]
    assert all(warmup is False and repeats == 1 for *_, warmup, repeats in calls)
    points = result["points"]
    assert "killed" in points[-1]["error"] and "timed out" in points[3]["error"]
    assert all("peak_gb" in p for p in points[:3])
    assert points[0]["ms_per_frame"] == pytest.approx(500.0)


def test_long_video_is_opt_in_and_counted():
    assert "long_video" in STAGES and "long_video" in OPT_IN_STAGES
    settings = BenchmarkSettings()
    assert count_steps(settings, ["long_video"]) == 1 + len(long_video.LONG_VIDEO_POINTS)
    assert (
        BenchmarkSettings.quick_settings().long_video_points == long_video.QUICK_LONG_VIDEO_POINTS
    )


def test_table_and_plot(tmp_path, monkeypatch):
    monkeypatch.setattr("vis_zoo.zoo.speed.measure_speed_in_subprocess", _fake_measurement([]))
    row = {
        "key": "vita/ytvis19_R50",
        "method": "vita",
        "config": "configs/vita/ytvis19_R50.yaml",
        "facts": {},
        "settings": {"frames": 8},
        "machine": {},
    }
    row["long_video"] = long_video.measure_long_video(
        row["config"], long_video.LONG_VIDEO_POINTS, device="cpu", threads=1
    )
    table = long_video.long_video_table([row], display_name)
    lines = table.splitlines()
    assert lines[0] == "**180x320**" and lines[4].startswith(
        "| VITA | 1.06 | 1.07 | failed | +1% |"
    )
    assert "**360x640**" in table and "| VITA | 1.23 | timed out |  |" in table
    assert "### Long videos" in render_table(
        {"rows": {row["key"]: row}}, str(tmp_path), str(tmp_path)
    )
    # a peak that moves by less than 0.5% is no growth, not "-0%"
    flat = dict(
        row,
        long_video={
            "points": [
                {
                    "height": 180,
                    "width": 320,
                    "frames": f,
                    "peak_gb": gb,
                    "ms_per_frame": 5.0,
                    "load_avg_1min": 1.0,
                }
                for f, gb in ((100, 1.230), (1000, 1.225))
            ]
        },
    )
    assert "| VITA | 1.23 | 1.23 | 0% |" in long_video.long_video_table([flat], display_name)
    path = plot_long_video({"rows": {row["key"]: row}}, str(tmp_path / "long.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"
    assert plot_long_video({"rows": {}}, str(tmp_path / "none.png")) is None


def test_points_measured_with_overrides_are_marked_in_the_table(monkeypatch):
    """A point measured off the config's defaults records its overrides, and the table marks it
    and says which overrides it used; points without overrides stay unmarked."""
    calls = []
    monkeypatch.setattr("vis_zoo.zoo.speed.measure_speed_in_subprocess", _fake_measurement(calls))
    store = ["MODEL.VIS.TEST_FEATURE_STORE", "disk"]
    plain = long_video.measure_long_video(
        "configs/vita/ytvis19_R50.yaml", [(180, 320, 100)], device="cpu", threads=1
    )
    overridden = long_video.measure_long_video(
        "configs/vita/ytvis19_R50.yaml", [(180, 320, 1000)], device="cpu", threads=1, opts=store
    )
    assert "opts" not in plain["points"][0] and overridden["points"][0]["opts"] == store
    row = {"key": "vita/ytvis19_R50", "method": "vita", "config": "configs/vita/ytvis19_R50.yaml"}
    row["long_video"] = {"points": plain["points"] + overridden["points"]}
    table = long_video.long_video_table([row], display_name)
    assert "| VITA | 1.06 | 1.07† | +1% | 500 | 500† |" in table
    assert "† measured with the config overrides `MODEL.VIS.TEST_FEATURE_STORE disk`." in table
    plain_table = long_video.long_video_table([dict(row, long_video=plain)], display_name)
    assert "†" not in plain_table


def test_plot_keeps_a_method_colour_across_frame_sizes(tmp_path, monkeypatch):
    """A method measured at one size only must not shift the colours of the others in the next
    panel."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    def row(key, sizes):
        points = [
            {"height": h, "width": w, "frames": f, "peak_gb": 1.0 + f / 1e4}
            for h, w in sizes
            for f in (100, 1000)
        ]
        return {"key": key, "method": key.split("/")[0], "long_video": {"points": points}}

    rows = [
        row("ifc/ytvis19_R50", [(180, 320), (360, 640)]),
        row("minvis/ytvis19_R50", [(180, 320)]),
        row("vita/ytvis19_R50", [(180, 320), (360, 640)]),
    ]
    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    long_video.plot_long_video_memory(rows, str(tmp_path / "long.png"), display_name)
    (fig,) = saved
    colours = [{line.get_label(): line.get_color() for line in ax.get_lines()} for ax in fig.axes]
    assert sorted(colours[0]) == ["IFC", "MinVIS", "VITA"] and sorted(colours[1]) == ["IFC", "VITA"]
    assert colours[1]["VITA"] == colours[0]["VITA"] and colours[1]["IFC"] == colours[0]["IFC"]
    assert len(set(colours[0].values())) == 3
