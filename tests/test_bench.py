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


# a whole sweep or bench run: the slow suite (make test stays under 10 minutes)
@pytest.mark.slow
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


@pytest.mark.slow
def test_the_default_sweep_suite_measures_the_search_and_the_whole_command() -> None:
    """Two search-only sweeps (the writer, inline) and the command as make sweep runs it,
    whose Σ training counts its confirmation's replicates, read back from its own store."""
    from sweeplab.bench import report, suites

    d = suites.default_sweep(n_trials=4)
    search, whole = d["process"], d["command"]
    assert search["runs"] == d["inline"]["runs"] == whole["runs"] == 4
    assert search["replicates"] == d["inline"]["replicates"] == 0
    assert whole["replicates"] >= 2 * 2  # at least two configurations, two seeds each
    for w in (search, d["inline"], whole):
        assert 0 < w["train_seconds"] < w["wall_seconds"]
        assert w["efficiency"] == pytest.approx(w["train_seconds"] / w["wall_seconds"])
    host = {"cpu": "cpu", "cores": 2, "blas": "b", "python": "3.11", "numpy": "2",
            "mlflow": "3", "optuna": "5"}
    text = report.markdown({"host": host, "quick": True, "date": "today", "default_sweep": d})
    label = "the whole command as make sweep runs it (search, then confirmation)"
    row = next(line for line in text.splitlines()
               if line.startswith(f"| default sweep, {label}: efficiency"))
    assert f"| {whole['efficiency']:.2f} | >= 0.7 |" in row
    assert f"4 trials and {whole['replicates']} replicates" in text


def test_bench_refuses_a_missing_data_dir(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no train_catvnoncat.h5" in capsys.readouterr().err


# -- the distributed suite: its report, its arithmetic, its proxy and replay ----------------

def canned_distributed() -> dict:
    """The distributed suite's results as bench/distributed.py returns them (figures from a
    quick run, shortened)."""
    clock = {"sections_median": {"ask": 0.003, "make_task": 0.034, "submit": 0.028,
                                 "tell": 0.003, "verdicts": 0.012, "why_stop": 0.0004,
                                 "poll": 0.0008, "loop": 0.0001},
             "median": 0.082, "p90": 0.096, "first_trial": 3.8}
    step = {"workers": 1, "seconds": 3.0, "trials": 11, "requests": 341, "errors": 0,
            "first_error": "", "requests_per_second": 113.4, "trials_per_second": 3.66,
            "p50_ms": 7.8, "p95_ms": 20.4}
    return {
        "throughput": {"trials": 6, "epochs": 10, "repeats": 1, "in_process_per_minute": 37.5,
                       "dask_1_per_minute": 66.0, "dask_2_per_minute": 120.1,
                       "in_process_end_to_end_per_minute": 18.4,
                       "dask_1_end_to_end_per_minute": 15.9,
                       "dask_2_end_to_end_per_minute": 16.2, "speedup_2_vs_1_dask": 1.82,
                       "dask_1_vs_in_process": 1.76, **{
                           f"{k}_{x}_seconds_median": 0.5 for k in ("in_process", "dask_1",
                                                                     "dask_2")
                           for x in ("trial", "train")},
                       **{f"dask_{n}_{part}_cpu_per_trial": 0.5 for n in (1, 2)
                          for part in ("worker", "server", "controller")}},
        "default_sweep": {
            "trials": 6, "states": {"complete": 4, "pruned": 2}, "trial_seconds_mean": 2.1,
            "trial_seconds_median": 1.9,
            "controller": {"trials": 6, "wall": clock, "cpu": clock,
                           "process_cpu_per_trial": 0.112, "verdicts_per_trial": 13.0},
            "requests_per_trial": {"PUT artifacts (model)": 8.0, "POST runs/log-batch": 4.0},
            "requests_per_trial_total": 30.0, "request_kib_per_trial": 142.0,
            "server_ms_per_trial": 550.0, "controller_requests_per_sweep": {"GET /health": 2},
            "server_cpu_per_trial": 0.3, "worker_cpu_per_trial": 0.9,
            "journal_records_per_trial": {"set_trial_user_attr": 9.0, "create_trial": 1.0}},
        "journal": {"seconds_per_record": 0.002, "seconds_per_trial": 0.054},
        "load": {"sqlite": {"steps": [step], "trials_per_second": 3.66},
                 "postgresql": {"skipped": "PostgreSQL's initdb/pg_ctl not found"}},
        "scaling": {"trial_seconds": 2.1, "worker_cpu_per_trial": 0.9,
                    "server_cpu_per_trial": 0.3, "controller_cpu_per_trial": 0.1,
                    "journal_seconds_per_trial": 0.007, "server_workers_by_cpu": 3.0,
                    "controller_workers_by_cpu": 9.0, "journal_workers_by_cpu": 128.6,
                    "server_sqlite_workers": 7.7},
        "load_average": {"min": 1.9, "median": 2.3, "max": 2.6},
    }


def test_distributed_report_renders_every_part_with_its_targets() -> None:
    from sweeplab.bench import report

    host = {"cpu": "cpu", "cores": 2, "blas": "b", "python": "3.11", "numpy": "2",
            "mlflow": "3", "optuna": "5"}
    text = report.markdown({"host": host, "quick": True, "date": "today",
                            "distributed": canned_distributed()})
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith("| ")}
    assert "66.0 trials/min (trial 0.50 s, its training 0.50 s)" in rows[
        "sweep, 6 trials x 10 epochs, make server: 1 Dask worker (sweep.cluster, BLAS 1 thread)"]
    assert rows["sweep on Dask: 2 workers / 1 (median of the repeats' ratios)"].endswith(
        "| 1.82x | >= 1.8x | met |")
    assert "1.65 / 3.00" in rows["sweep on Dask, 1 / 2 workers: cores the sweep used (rate x "
                                 "CPU per trial)"]  # 66 and 120.1 trials/min x 1.5 CPU-s
    # the controller's wall time is judged against its target; its CPU is shown beside
    assert rows["controller per trial, wall: median (p90)"].endswith(
        "| 82.0 ms (96.0 ms) | <= 20 ms | **missed** |")
    assert "make_task 34.0" in rows["controller per trial, CPU of its thread, median by part "
                                    "(ms)"]
    assert "30.0: PUT artifacts (model) 8" in rows["tracking server requests per trial"]
    assert "10.0: set_trial_user_attr 9" in rows["journal records per trial (Optuna "
                                               "JournalStorage)"]
    assert "113 req/s, 3.66 trials/s, p50 8 ms, p95 20 ms" in \
        rows["make server (sqlite), 1 simulated workers"]
    assert "skipped: PostgreSQL" in rows["make server (postgresql) load test"]
    assert "900.0 ms / 300.0 ms / 100.0 ms" in rows[
        "CPU per trial of the default sweep: worker / make server / controller"]
    assert "3.0 / 9 / 129" in rows["workers one core keeps up with, by CPU: make server / "
                                   "controller / journal"]
    assert "make server (sqlite) 7.7" in rows["workers make server keeps up with, by its "
                                              "load-test rate x the mean trial (2.10 s)"]


def test_a_partial_run_keeps_the_other_suites_of_the_same_kind(tmp_path: Path) -> None:
    from sweeplab.bench.__main__ import keep_earlier

    latest = tmp_path / "latest.json"
    host = {"cpu": "cpu X", "torch": "2.13"}
    latest.write_text(json.dumps({"host": host, "quick": False, "date": "d1",
                                  "training": {"t": 1}, "distributed": {"old": 1}}))
    now = {"host": {"cpu": "cpu X"}, "quick": False, "date": "d2", "distributed": {"new": 1}}
    keep_earlier(now, latest)
    assert now["training"] == {"t": 1} and now["distributed"] == {"new": 1}
    assert now["earlier"] == {"training": "d1"} and now["host"]["torch"] == "2.13"
    quick = {"host": {"cpu": "cpu X"}, "quick": True, "date": "d3", "distributed": {}}
    keep_earlier(quick, latest)  # a quick run never mixes with full results
    assert "training" not in quick and "earlier" not in quick


def test_controller_cost_and_steady_rate_from_canned_clocks() -> None:
    from datetime import datetime, timedelta

    from sweeplab.bench.distributed import controller_cost, steady_durations, steady_rate

    def trial(ask: float, verdicts: float) -> dict:
        return {"ask": [ask, ask / 2], "make_task": [0.01, 0.01], "submit": [0.01, 0.01],
                "tell": [0.01, 0.01], "verdicts": [verdicts, verdicts / 2]}

    timings = {"trials": {"0": trial(5.0, 0.0), "1": trial(0.01, 0.02),
                          "2": trial(0.02, 0.02), "3": trial(0.03, 0.02)},
               "sweep": {"why_stop": [0.04, 0.02], "poll": [0.04, 0.02], "wait": [10, 0],
                         "run": [15.28, 0.5], "process_cpu": [0, 1.0]},
               "verdicts": {"1": 12, "2": 12, "3": 12}}
    c = controller_cost(timings)
    # why_stop, poll and the rest of the loop (run - wait - all timed) spread over 4 trials
    in_trials = 5.03 + 0.04 + 0.05 + 0.06
    shared = (0.04 + 0.04 + (15.28 - 10 - 0.04 - 0.04 - in_trials)) / 4
    # trials 1, 2, 3 cost 0.06, 0.07, 0.08 + shared; trial 0 (the first) is apart
    assert c["wall"]["median"] == pytest.approx(0.07 + shared)
    assert c["wall"]["p90"] == pytest.approx(0.08 + shared)
    assert c["wall"]["first_trial"] == pytest.approx(5.03 + shared)
    assert c["process_cpu_per_trial"] == pytest.approx(0.25)
    assert c["verdicts_per_trial"] == 12

    class T:
        def __init__(self, number: int, worker: str, start: float, end: float) -> None:
            t0 = datetime(2026, 1, 1)
            self.number, self.user_attrs = number, {"worker": worker}
            self.datetime_complete = t0 + timedelta(seconds=end)
            self.duration = timedelta(seconds=end - start)

    # w0 finishes at 10, 12, 14 (its first trial waited for its imports); w1 at 11, 15
    trials = [T(0, "w0", 0, 10), T(1, "w1", 0, 11), T(2, "w0", 10, 12), T(3, "w0", 12, 14),
              T(4, "w1", 11, 15)]
    assert steady_rate(trials) == pytest.approx(2 / 4 * 60 + 1 / 4 * 60)
    assert sorted(steady_durations(trials)) == [2, 2, 4]


def test_the_counting_proxy_records_and_the_replay_renames_ids() -> None:
    """A stub server stands in for MLflow's: the proxy counts what goes through it by
    endpoint, and a replay of the captured trial sends the ids the stub hands out now."""
    import itertools
    import threading
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sweeplab.bench import loadtest
    from sweeplab.bench.proxy import CountingProxy, endpoint

    counter = itertools.count()
    seen: list[str] = []

    class Stub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(f"{self.command} {self.path} {body.decode()}")
            answer = b"OK"
            if self.path.endswith("runs/create"):
                answer = json.dumps({"run": {"info": {"run_id": f"{next(counter):032x}"}}}
                                    ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_any

    stub = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    api = "/api/2.0/mlflow"
    parent = "p" * 32
    try:
        with CountingProxy(f"http://127.0.0.1:{stub.server_address[1]}", ["w0"],
                           capture={"w0"}) as proxy:
            def send(method: str, path: str, body: bytes | None = None) -> bytes:
                req = urllib.request.Request(proxy.url("w0") + path, data=body, method=method)
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.read()

            send("GET", "/health")
            run = json.loads(send("POST", f"{api}/runs/create", parent.encode())
                             )["run"]["info"]["run_id"]
            send("PUT", f"/api/2.0/mlflow-artifacts/artifacts/1/{run}/artifacts/config.yaml",
                 b"x: 1")
            # as an http_proxy (absolute-form target), as the bench's sweep processes use it
            via = urllib.request.build_opener(urllib.request.ProxyHandler(
                {"http": proxy.url("w0")}))
            stub_url = f"http://127.0.0.1:{stub.server_address[1]}"
            with via.open(urllib.request.Request(f"{stub_url}{api}/runs/log-batch",
                                                 data=run.encode(), method="POST")) as r:
                assert r.read() == b"OK"
            records = proxy.take()
        assert [r.endpoint for r in records] == [
            "GET /health", "POST runs/create", "PUT artifacts (run)", "POST runs/log-batch"]
        assert endpoint("PATCH", f"{api}/logged-models/m-{'a' * 32}") == \
            "PATCH logged-models/{id}"
        (sequence,) = loadtest.trial_sequences(records)
        seen.clear()
        result = loadtest.replay(stub_url, [sequence], 1,
                                 60.0, [(parent.encode(), b"q" * 32)], max_trials=1)
        assert result["trials"] == 1 and result["requests"] == 4 and result["errors"] == 0
        new_run = f"{1:032x}"  # the stub's second run id
        assert seen[1].endswith("q" * 32)  # the replay's own parent run
        assert f"/{new_run}/artifacts/config.yaml x: 1" in seen[2]
        assert seen[3].endswith(new_run)
    finally:
        stub.shutdown()
        stub.server_close()
