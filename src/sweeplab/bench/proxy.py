"""A counting HTTP proxy on loopback, for the bench: it listens on one port per client role
(the controller, each worker) and forwards every request to one tracking server, keeping
a record of each (role, method, endpoint, bytes, status, milliseconds) and, for roles that
ask for it, the request itself and its response, so that a trial's requests can be
replayed (see loadtest.py).

    with CountingProxy("http://127.0.0.1:5000", ["controller", "w0"]) as proxy:
        proxy.url("w0")          # http://127.0.0.1:<port>: give it to that client, as its
                                 # tracking URI or as its http_proxy (then it keeps the
                                 # server's URI, which a sweep's controller hands its workers)
        proxy.records            # what went through, in order

It keeps connections alive on both sides (MLflow's client pools them) and decodes chunked
request bodies; it is a test tool for a server on this machine, not a general proxy.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
# Headers that belong to one hop, not to the request (RFC 9110 7.6.1), and those the proxy
# sets itself.
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade", "content-length", "host"}
_ID = re.compile(r"^(m-)?[0-9a-f]{32}$")
_API = re.compile(r"^/(ajax-)?api/[0-9.]+/")


def endpoint(method: str, path: str) -> str:
    """``POST runs/log-batch``: a request named as MLflow's REST API names it, ids replaced
    by ``{id}``; an artifact upload is ``PUT artifacts (run)`` or ``PUT artifacts (model)``
    (MLflow 3 keeps a logged model's files under ``.../models/<model id>/artifacts/``)."""
    path = urlsplit(path).path
    rest = _API.sub("", path)
    if rest.startswith("mlflow-artifacts/artifacts/"):
        kind = "model" if "/models/m-" in rest else "run"
        return f"{method} artifacts ({kind})"
    rest = rest.removeprefix("mlflow/")
    parts = ["{id}" if _ID.match(p) else p for p in rest.split("/")]
    return f"{method} {'/'.join(parts) or '/'}"


@dataclass
class Record:
    role: str
    method: str
    path: str  # with its query
    endpoint: str
    status: int
    request_bytes: int
    response_bytes: int
    ms: float  # from the request read to the response sent, the proxy's hop included
    started: float  # time.perf_counter() at the request read
    body: bytes | None = None  # kept for roles that capture
    headers: dict[str, str] | None = None
    response: bytes | None = None


class CountingProxy:
    """One listening port per role, all forwarding to `upstream`."""

    def __init__(self, upstream: str, roles: list[str], capture: set[str] | None = None
                 ) -> None:
        u = urlsplit(upstream)
        self.upstream_host, self.upstream_port = u.hostname or LOOPBACK, u.port or 80
        self.capture = capture or set()
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._servers: dict[str, ThreadingHTTPServer] = {}
        self._threads: list[threading.Thread] = []
        for role in roles:
            server = ThreadingHTTPServer((LOOPBACK, 0), self._handler(role))
            server.daemon_threads = True
            self._servers[role] = server

    def url(self, role: str) -> str:
        return f"http://{LOOPBACK}:{self._servers[role].server_address[1]}"

    def start(self) -> CountingProxy:
        for role, server in self._servers.items():
            t = threading.Thread(target=server.serve_forever, name=f"proxy-{role}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def take(self) -> list[Record]:
        """The records so far, and start a new list."""
        with self._lock:
            out, self.records = self.records, []
        return out

    def _handler(self, role: str) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                started = time.perf_counter()
                if self.path.startswith("http://"):  # sent to us as a proxy: absolute form
                    u = urlsplit(self.path)
                    self.path = u.path + (f"?{u.query}" if u.query else "")
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                for attempt in (0, 1):  # once more on a kept-alive connection the server closed
                    if self.upstream is None:
                        self.upstream = http.client.HTTPConnection(
                            proxy.upstream_host, proxy.upstream_port, timeout=120)
                    try:
                        self.upstream.request(self.command, self.path, body=body,
                                              headers=headers)
                        resp = self.upstream.getresponse()
                        data = resp.read()
                        break
                    except (ConnectionError, http.client.HTTPException):
                        self.upstream.close()
                        self.upstream = None
                        if attempt:
                            raise
                keep = role in proxy.capture
                rec = Record(role, self.command, self.path, endpoint(self.command, self.path),
                             resp.status, len(body), len(data),
                             1e3 * (time.perf_counter() - started), started,
                             body if keep else None, headers if keep else None,
                             data if keep else None)
                # recorded before the client has its answer: whoever reads the records
                # after a request returned finds it there
                with proxy._lock:
                    proxy.records.append(rec)
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        return Handler
