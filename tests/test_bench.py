"""make bench runs and reports (a smoke test: no timing is asserted, only that the figures
exist, are positive, and that the float64 curve check compares real curves)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sweeplab.bench import textbook
from sweeplab.bench.__main__ import main


def test_textbook_reference_is_the_same_mathematics(shared_datasets: Path) -> None:
    from sweeplab.bench.suites import course_config
    from sweeplab.data import load_dataset
    from sweeplab.train import run

    cfg = course_config(12, "float64", str(shared_datasets / "catvnoncat"))
    data = load_dataset(cfg.data, seed=1)
    _, ref = textbook.L_layer_model(np.array(data.X_train), np.array(data.Y_train),
                                    [12288, 20, 7, 5, 1], 0.0075, 12)
    ours = run(cfg, (), data).costs
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert ref[0] == pytest.approx(0.771749, abs=5e-7)  # the course's printed first cost


def test_bench_smoke(shared_datasets: Path, tmp_path: Path) -> None:
    code = main(["--data-dir", str(shared_datasets / "catvnoncat"), "--out", str(tmp_path),
                 "--only", "training", "tracking", "--iterations", "5", "--repeats", "1"])
    assert code == 0
    results = json.loads((tmp_path / "latest.json").read_text())
    t = results["training"]
    assert t["iterations"] == 5
    assert t["curve_identical"] and t["curve_max_rel_diff_vs_textbook"] < 1e-10
    # the default form on the cat images is the dual one; the direct one is timed beside it
    assert t["first_layer"] == "dual"
    assert t["curve_max_rel_diff_vs_textbook_direct"] < 1e-10
    assert {"sweeplab float64", "sweeplab direct float64"} <= t["ms_per_iteration"].keys()
    assert t["speedup_float64_vs_textbook_direct"] > 0
    assert all(v > 0 for v in t["ms_per_iteration"].values())
    assert results["tracking"]["median_seconds"]["with tracker"] > 0
    text = (tmp_path / "latest.md").read_text()
    assert "textbook / sweeplab" in text and "tracking overhead" in text


def test_bench_refuses_a_missing_data_dir(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no train_catvnoncat.h5" in capsys.readouterr().err
