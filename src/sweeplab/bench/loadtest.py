"""A bounded load test of a tracking server: N simulated sweep workers, each replaying real
trials' MLflow requests in a loop for a fixed time, on loopback.

The requests are those that trials of a real sweep sent (captured by proxy.CountingProxy):
same methods, paths and bodies, with the ids the server handed out (run ids, logged-model
ids) and the sweep's parent run replaced by the replay's own, so every request does the
work it did in the sweep: create the run, log params, inputs and metric batches, upload
configs, plot and model files, finalise the model, set tags, terminate.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sweeplab.bench.proxy import HOP, Record

TRIAL_START = "GET /health"  # a trial's first request: MlflowTracker checks the server
MAX_ERRORS = 20  # a simulated worker stops after this many failed requests


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    response: bytes  # what the server answered in the sweep (for the ids it handed out)
    endpoint: str


def trial_sequences(records: list[Record]) -> list[list[Request]]:
    """The captured requests of each worker role, cut into trials (a worker runs one
    trial at a time; each starts with TRIAL_START). Only whole trials are kept."""
    by_role: dict[str, list[Record]] = {}
    for r in records:
        if r.body is not None:
            by_role.setdefault(r.role, []).append(r)
    out: list[list[Request]] = []
    for recs in by_role.values():
        current: list[Request] = []
        for r in recs:
            if r.endpoint == TRIAL_START and current:
                out.append(current)
                current = []
            current.append(Request(r.method, r.path, r.body or b"", dict(r.headers or {}),
                                   r.response or b"", r.endpoint))
        if current and current[-1].endpoint == "POST runs/log-batch":  # ended as a trial ends
            out.append(current)
    return out


def _new_ids(req: Request, answer: bytes) -> list[tuple[bytes, bytes]]:
    """(old id, new id) from a response that hands out an id: a run's or a logged model's."""
    pairs = []
    if req.endpoint in ("POST runs/create", "POST logged-models"):
        kind, key = ("run", "run_id") if req.endpoint == "POST runs/create" else \
            ("model", "model_id")
        old = json.loads(req.response)[kind]["info"][key]
        new = json.loads(answer)[kind]["info"][key]
        pairs.append((old.encode(), new.encode()))
    return pairs


@dataclass
class WorkerStats:
    trials: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""


def _worker(url: str, sequences: list[list[Request]], start: int, deadline: float,
            max_trials: int, substitute: list[tuple[bytes, bytes]], stats: WorkerStats
            ) -> None:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=60)
    k = start
    try:
        while (time.perf_counter() < deadline and stats.trials < max_trials
               and stats.errors < MAX_ERRORS):
            ids = list(substitute)
            for req in sequences[k % len(sequences)]:
                path, body = req.path.encode(), req.body
                for old, new in ids:
                    path, body = path.replace(old, new), body.replace(old, new)
                headers = {h: v for h, v in req.headers.items() if h.lower() not in HOP}
                t = time.perf_counter()
                try:
                    conn.request(req.method, path.decode(), body=body, headers=headers)
                    resp = conn.getresponse()
                    answer = resp.read()
                except (OSError, http.client.HTTPException) as err:
                    conn.close()
                    stats.errors += 1
                    stats.first_error = stats.first_error or f"{req.endpoint}: {err}"
                    break
                stats.latencies_ms.append(1e3 * (time.perf_counter() - t))
                if resp.status != 200:
                    stats.errors += 1
                    stats.first_error = stats.first_error or (
                        f"{req.endpoint}: HTTP {resp.status} {answer[:200]!r}")
                    break
                ids += _new_ids(req, answer)
            else:
                stats.trials += 1
            k += 1
    finally:
        conn.close()


def replay(url: str, sequences: list[list[Request]], n_workers: int, seconds: float,
           substitute: list[tuple[bytes, bytes]], max_trials: int = 2000) -> dict[str, Any]:
    """`n_workers` threads, each replaying whole trials (cycling through `sequences`) until
    `seconds` have passed (a trial under way then is finished) or `max_trials` each.
    `substitute` maps the sweep's ids to this server's (its parent run)."""
    stats = [WorkerStats() for _ in range(n_workers)]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=_worker, args=(url, sequences, i, t0 + seconds,
                                                      max_trials, substitute, stats[i]),
                                daemon=True) for i in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 300)
    elapsed = time.perf_counter() - t0
    lat = sorted(x for s in stats for x in s.latencies_ms)
    trials = sum(s.trials for s in stats)
    return {
        "workers": n_workers, "seconds": elapsed, "trials": trials,
        "requests": len(lat), "errors": sum(s.errors for s in stats),
        "first_error": next((s.first_error for s in stats if s.first_error), ""),
        "requests_per_second": len(lat) / elapsed, "trials_per_second": trials / elapsed,
        "p50_ms": statistics.median(lat) if lat else float("nan"),
        "p95_ms": lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
    }
