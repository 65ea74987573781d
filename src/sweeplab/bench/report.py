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
        form = t.get("first_layer", "direct")
        lines += [_row(f"4-layer cat, {t['iterations']} iterations: {name}",
                       f"{v:.2f} ms/iteration") for name, v in ms.items()]
        for key, label in (("", f"sweeplab ({form} form, the default)"),
                           ("_direct", "sweeplab direct")):
            main = not key  # targets are judged on what users run; direct is shown beside
            s64 = t[f"speedup_float64_vs_textbook{key}"]
            lines.append(_row(f"float64: textbook / {label}", f"{s64:.2f}x", ">= 3x",
                              s64 >= 3))
            curve = t[f"curve_max_rel_diff_vs_textbook{key}"] if key else \
                t["curve_max_rel_diff_vs_textbook"]
            lines.append(_row(f"float64 curve vs textbook, {label} (max rel. diff)",
                              f"{curve:.1e}", "<= 1e-10", curve <= 1e-10))
            if f"speedup_float32_vs_pytorch{key}" in t:
                s32 = t[f"speedup_float32_vs_pytorch{key}"]
                lines.append(_row(f"float32: PyTorch / {label}", f"{s32:.2f}x", "> 1x",
                                  s32 > 1))
            elif main:
                lines.append(_row("float32 vs PyTorch", "not measured (torch not "
                                  "installed)", "> 1x"))
            for dt in ("float64", "float32"):
                k = t[f"times_the_bound_{dt}{key}"]
                lines.append(_row(f"{dt}: {label} time / bandwidth bound "
                                  f"({t[f'bandwidth_bound_ms_{dt}']:.2f} ms)", f"{k:.2f}x",
                                  "<= 1.5x" if dt == "float32" else "",
                                  k <= 1.5 if dt == "float32" else None))
    if "tracking" in r:
        k = r["tracking"]
        med = k["median_seconds"]
        every = f"every {k['log_every']} iterations"
        rows = (("", f"default-form course run ({every})", "without tracker"),
                ("_direct", f"direct-form course run ({every})", "direct without tracker"),
                ("_direct_every_iteration", "direct-form run, every iteration logged",
                 "direct without tracker"))
        for key, label, base in rows:
            frac = k[f"overhead_fraction{key}"]
            lines.append(_row(f"tracking overhead, {label}, {med[base]:.2f} s",
                              f"{100 * frac:.1f}%", "<= 5%", frac <= 0.05))
        lines.append(_row("tracking fixed cost per run", f"{k['fixed_seconds_per_run']:.2f} s",
                          "<= 0.3 s", k["fixed_seconds_per_run"] <= 0.3))
    if "sweep" in r:
        s = r["sweep"]
        lines += [_row(f"sweep, {s['n_trials']} trials x {s['epochs']} epochs: 1 worker",
                       f"{s['trials_per_minute_1_worker']:.1f} trials/min"),
                  _row("sweep: 2 workers", f"{s['trials_per_minute_2_worker']:.1f} trials/min"),
                  _row("sweep: 2 workers / 1", f"{s['speedup_2_workers']:.2f}x", ">= 1.7x",
                       s["speedup_2_workers"] >= 1.7)]
    return "\n".join(lines) + "\n"
