"""The bench's results as a markdown table, with each target beside its measurement."""

from __future__ import annotations

from typing import Any


def _row(what: str, value: str, target: str = "", ok: bool | None = None) -> str:
    mark = "" if ok is None else ("met" if ok else "**missed**")
    return f"| {what} | {value} | {target} | {mark} |"


def markdown(r: dict[str, Any]) -> str:
    m = r["host"]
    lines = [f"# make bench ({'quick' if r['quick'] else 'full'}, {r['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; BLAS {m['blas']}; Python "
             f"{m['python']}, NumPy {m['numpy']}, MLflow {m['mlflow']}, Optuna {m['optuna']}"
             + (f", PyTorch {m['torch']}" if "torch" in m else ", PyTorch not installed"),
             "", "| measurement | value | target | |", "| --- | --- | --- | --- |"]
    if "machine" in r:
        x = r["machine"]
        lines += [_row("GEMM float64 / float32", f"{x['gemm_gflops_float64']:.1f} / "
                       f"{x['gemm_gflops_float32']:.1f} GFLOP/s"),
                  _row("read bandwidth, 512 MiB", f"{x['read_bandwidth_GBps_512MiB']:.1f} GB/s")]
    if "training" in r:
        t = r["training"]
        ms = t["ms_per_iteration"]
        lines += [_row(f"4-layer cat, {t['iterations']} iterations: {name}",
                       f"{v:.2f} ms/iteration") for name, v in ms.items()]
        lines += [
            _row("float64: textbook / sweeplab", f"{t['speedup_float64_vs_textbook']:.2f}x",
                 ">= 3x", t["speedup_float64_vs_textbook"] >= 3),
            _row("float64 curve vs textbook (max rel. diff)",
                 f"{t['curve_max_rel_diff_vs_textbook']:.1e}", "<= 1e-10",
                 t["curve_identical"]),
        ]
        if "speedup_float32_vs_pytorch" in t:
            s = t["speedup_float32_vs_pytorch"]
            lines.append(_row("float32: PyTorch / sweeplab", f"{s:.2f}x", "> 1x", s > 1))
        else:
            lines.append(_row("float32 vs PyTorch", "not measured (torch not installed)",
                              "> 1x"))
        for dt in ("float64", "float32"):
            k = t[f"times_the_bound_{dt}"]
            lines.append(_row(f"{dt}: time / bandwidth bound "
                              f"({t[f'bandwidth_bound_ms_{dt}']:.2f} ms)", f"{k:.2f}x",
                              "<= 1.5x" if dt == "float32" else "",
                              k <= 1.5 if dt == "float32" else None))
    if "tracking" in r:
        k = r["tracking"]
        lines += [_row(f"tracking overhead ({k['points_logged']} points logged)",
                       f"{100 * k['overhead_fraction']:.1f}%", "<= 5%",
                       k["overhead_fraction"] <= 0.05),
                  _row("tracking fixed cost per run", f"{k['fixed_seconds_per_run']:.2f} s",
                       "<= 0.3 s", k["fixed_seconds_per_run"] <= 0.3)]
    if "sweep" in r:
        s = r["sweep"]
        lines += [_row(f"sweep, {s['n_trials']} trials x {s['epochs']} epochs: 1 worker",
                       f"{s['trials_per_minute_1_worker']:.1f} trials/min"),
                  _row("sweep: 2 workers", f"{s['trials_per_minute_2_worker']:.1f} trials/min"),
                  _row("sweep: 2 workers / 1", f"{s['speedup_2_workers']:.2f}x", ">= 1.7x",
                       s["speedup_2_workers"] >= 1.7)]
    return "\n".join(lines) + "\n"
