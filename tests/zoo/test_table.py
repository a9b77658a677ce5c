"""vis_zoo.zoo.table: the MODEL_ZOO.md table between its markers, its cell tags and the
AP-versus-training-time plot."""

from vis_zoo.zoo.table import (
    BEGIN_MARKER,
    END_MARKER,
    plot_ap_vs_train_time,
    render_table,
    update_model_zoo,
)
from tests.zoo.zoo_helpers import make_row


def test_table_rows_errors_and_markers(tmp_path):
    results = {
        "rows": {
            "ifc/ytvis19_R50": make_row(
                "ifc/ytvis19_R50",
                "ifc",
                "configs/ifc/ytvis19_R50.yaml",
                params_m=39.15,
                gflops_per_frame=70.1,
                speed={"ms_per_frame": 812.3, "fps": 1.23, "peak_gb": 2.5},
                max_frames={"max_frames": 64, "capped": True, "note": ""},
                train_s_per_iter=9.5,
            ),
            "newm/ytvis19_R50": make_row(
                "newm/ytvis19_R50",
                "newm",
                "configs/newm/ytvis19_R50.yaml",
                build_error="KeyError: 'No object named NEWM found'",
            ),
        }
    }
    md = tmp_path / "MODEL_ZOO.md"
    md.write_text(
        f"# Zoo\n\nHand-written intro.\n\n{BEGIN_MARKER}\nold table\n{END_MARKER}\n\nFooter kept.\n"
    )
    update_model_zoo(str(md), results, str(tmp_path))
    text = md.read_text()
    assert text.startswith("# Zoo\n\nHand-written intro.") and text.rstrip().endswith(
        "Footer kept."
    )
    assert "old table" not in text and text.count(BEGIN_MARKER) == 1
    assert "Test CPU (2 cores" in text and "2 CPU threads" in text
    ifc = next(line for line in text.splitlines() if line.startswith("| IFC"))
    cells = [c.strip() for c in ifc.strip("|").split("|")]
    assert cells[3] == "[ytvis19_R50](configs/ifc/ytvis19_R50.yaml)"
    assert cells[5:12] == ["39.15", "70.10", "812", "1.23", "2.50", "≥ 64", "9.50"]
    assert cells[-1] == "42.8"  # paper reference of IFC R-50 on YouTube-VIS 2019
    new = next(line for line in text.splitlines() if line.startswith("| NEWM"))
    assert "error: KeyError" in new and new.rstrip().endswith(
        "| — |"
    )  # no paper number for an unknown method

    # AP-versus-training-time plot: drawn from rows with accuracy only
    assert plot_ap_vs_train_time(results, str(tmp_path / "ap.png")) is None
    results["rows"]["ifc/ytvis19_R50"]["accuracy"] = {"AP": 31.0, "wall_s": 1200.0}
    assert plot_ap_vs_train_time(results, str(tmp_path / "ap.png")) == str(tmp_path / "ap.png")
    assert (tmp_path / "ap.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 31.0 |" in render_table(results, str(tmp_path), str(tmp_path))

    # rows measured with different settings are tagged
    results["rows"]["ifc/ytvis19_R50"]["settings"] = dict(
        results["rows"]["ifc/ytvis19_R50"]["settings"], frames=4
    )
    block = render_table(results, str(tmp_path), str(tmp_path))
    assert "[a]" in block and "[b]" in block


def test_a_cell_measured_in_another_run_than_its_row_carries_its_own_tag(tmp_path):
    """Rerunning one stage of a row (train_speed with 1 thread) must not relabel the speed numbers
    the earlier run measured: the row keeps that run's tag, the rerun cell gets its own."""
    earlier = make_row("vita/ytvis19_R50", "vita", "configs/vita/ytvis19_R50.yaml")
    later = {
        "machine": dict(earlier["machine"], torch_threads=1),
        "settings": dict(earlier["settings"], threads=1),
        "updated": "2026-12-06T17:42:19",
    }
    first = {k: earlier[k] for k in ("machine", "settings")}
    row = dict(
        earlier,
        **later,  # the row's last run: the train_speed rerun
        stage_runs={"speed": first, "max_frames": first, "train_speed": later},
        params_m=57.1,
        speed={"ms_per_frame": 1556.0, "fps": 0.64, "peak_gb": 1.32},
        max_frames={"max_frames": 64, "capped": True, "note": ""},
        train_s_per_iter=56.84,
    )
    other = make_row(
        "ifc/ytvis19_R50",
        "ifc",
        "configs/ifc/ytvis19_R50.yaml",
        speed={"ms_per_frame": 315.0, "fps": 3.18, "peak_gb": 1.58},
        train_s_per_iter=3.57,
    )
    block = render_table(
        {"rows": {"ifc/ytvis19_R50": other, "vita/ytvis19_R50": row}},
        str(tmp_path),
        str(tmp_path),
    )
    lines = block.splitlines()
    assert sum(line.startswith("- [") for line in lines) == 2  # two settings: 2 and 1 threads
    assert any(line.startswith("- [a]") and "2 CPU threads" in line for line in lines)
    assert any(line.startswith("- [b]") and "1 CPU threads" in line for line in lines)
    vita = next(line for line in lines if line.startswith("| VITA"))
    cells = [c.strip() for c in vita.strip("|").split("|")]
    assert cells[0] == "VITA [a]"  # its speed columns come from the first run
    assert cells[10] == "≥ 64" and cells[11] == "56.84 [b]"
    ifc = next(line for line in lines if line.startswith("| IFC"))
    assert "[b]" not in ifc  # a row of one run: no cell tags
