"""Counters and the small HTTP endpoint: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text).

The endpoint listens on loopback by default and never shows PHI: only counts, queue depths,
latencies and destination names.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Upper bounds (seconds) of the latency histogram buckets.
_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    """Thread-safe counters, labelled by a small fixed set of names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.counters: dict[tuple[str, str], float] = defaultdict(float)
        self.latency_counts = [0] * (len(_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_n = 0

    def inc(self, name: str, label: str = "", value: float = 1.0) -> None:
        with self._lock:
            self.counters[(name, label)] += value

    def get(self, name: str, label: str = "") -> float:
        with self._lock:
            return self.counters.get((name, label), 0.0)

    def observe_latency(self, seconds: float) -> None:
        with self._lock:
            self.latency_sum += seconds
            self.latency_n += 1
            for index, bound in enumerate(_BUCKETS):
                if seconds <= bound:
                    self.latency_counts[index] += 1
                    break
            else:
                self.latency_counts[-1] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counters: dict[str, Any] = {}
            for (name, label), value in sorted(self.counters.items()):
                if label:
                    counters.setdefault(name, {})[label] = value
                else:
                    counters[name] = value
            return {
                "started": self.started,
                "uptime_s": round(time.time() - self.started, 1),
                "counters": counters,
                "latency": {
                    "count": self.latency_n,
                    "sum_s": round(self.latency_sum, 3),
                    "mean_s": round(self.latency_sum / self.latency_n, 3)
                    if self.latency_n
                    else None,
                },
            }

    def prometheus(self, depth: dict[str, int]) -> str:
        """The counters in the Prometheus text exposition format (version 0.0.4)."""
        lines = []
        with self._lock:
            by_name: dict[str, list[tuple[str, float]]] = defaultdict(list)
            for (name, label), value in sorted(self.counters.items()):
                by_name[name].append((label, value))
            for name, values in by_name.items():
                metric = f"radguard_gateway_{name}_total"
                lines.append(f"# TYPE {metric} counter")
                for label, value in values:
                    tag = f'{{kind="{label}"}}' if label else ""
                    lines.append(f"{metric}{tag} {value:g}")
            lines.append("# TYPE radguard_gateway_queue_depth gauge")
            for queue, value in sorted(depth.items()):
                lines.append(f'radguard_gateway_queue_depth{{queue="{queue}"}} {value}')
            metric = "radguard_gateway_study_latency_seconds"
            lines.append(f"# TYPE {metric} histogram")
            cumulative = 0
            for bound, count in zip(_BUCKETS, self.latency_counts, strict=False):
                cumulative += count
                lines.append(f'{metric}_bucket{{le="{bound:g}"}} {cumulative}')
            lines.append(f'{metric}_bucket{{le="+Inf"}} {self.latency_n}')
            lines.append(f"{metric}_sum {self.latency_sum:.3f}")
            lines.append(f"{metric}_count {self.latency_n}")
            lines.append("# TYPE radguard_gateway_uptime_seconds gauge")
            lines.append(f"radguard_gateway_uptime_seconds {time.time() - self.started:.1f}")
        return "\n".join(lines) + "\n"


def serve_http(
    host: str,
    port: int,
    metrics: Metrics,
    depth: Callable[[], dict[str, int]],
    health: Callable[[], tuple[bool, dict[str, Any]]],
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; return the server (``shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                ok, details = health()
                self._send(200 if ok else 503, "application/json", json.dumps(details) + "\n")
            elif self.path == "/metrics":
                text = metrics.prometheus(depth())
                self._send(200, "text/plain; version=0.0.4", text)
            else:
                self._send(404, "text/plain", "not found: try /healthz or /metrics\n")

        def _send(self, code: int, kind: str, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # no access log on the console

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="radguard-http", daemon=True).start()
    return server
