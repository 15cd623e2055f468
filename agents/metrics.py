"""Counters, gauges and latency histograms an operator scrapes: ``/metrics`` (Prometheus text, written by
prometheus_client) and ``/healthz``.

Every series is labelled ``role`` and ``worker`` (the agent's name in its farm, or its role alone), so
one engine serving many worker accounts exposes them side by side on one port. The process's own RSS,
CPU seconds and open descriptors come from prometheus_client's process collector (``process_*``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from decentralml_core.netguard import bounded_writes

prometheus_client.disable_created_metrics()  # no *_created series: they double the page and nobody graphs them
LABELS = ("role", "worker")
# Seconds: a tiny task on a local devnet is claimed in ~10 ms and paid in ~20 ms; a real one over a real
# chain takes blocks (6 s each) and a review of minutes to hours.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)


class _Families:
    """One registry per process and its metric families, created on first use (shared by every view)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.by_name: dict[str, object] = {}

    def get(self, kind: type, name: str, doc: str = ""):
        family = self.by_name.get(name)
        if family is None:
            extra = {"buckets": LATENCY_BUCKETS} if kind is Histogram else {}
            family = kind(f"decentralml_{name}", doc or name.replace("_", " "), LABELS, registry=self.registry, **extra)
            self.by_name[name] = family
        return family


class Metrics:
    """One agent's (or one worker account's) view of the process's metrics."""

    def __init__(self, role: str, worker: str | None = None, families: _Families | None = None) -> None:
        self.role, self.worker = role, worker or role
        self.families = families or _Families()
        self.started = time.time()
        self.gauges: dict[str, float] = {}
        self.sources: dict[str, Callable[[], float | None]] = {}
        self._gauge_child("uptime_seconds", lambda: time.time() - self.started)

    def view(self, role: str, worker: str) -> Metrics:
        """Another worker's metrics, on the same registry (one /metrics page for an engine)."""
        return Metrics(role, worker, self.families)

    def _labels(self) -> dict:
        return {"role": self.role, "worker": self.worker}

    def _gauge_child(self, name: str, read: Callable[[], float | None]) -> None:
        def value() -> float:
            found = read()
            return math.nan if found is None else float(found)

        self.families.get(Gauge, name).labels(**self._labels()).set_function(value)

    def watch(self, name: str, source: Callable[[], float | None]) -> None:
        """A gauge also fed by ``source`` (read at each scrape; the larger value wins): ``chain_block`` from
        the chain client's stream, which moves on blocks without events the agent would never see."""
        self.sources[name] = source
        self._gauge_child(name, lambda: self.gauge(name))

    def gauge(self, name: str) -> float | None:
        values = [v for v in (self.gauges.get(name), self.sources[name]() if name in self.sources else None)
                  if v is not None]
        return max(values) if values else None

    def inc(self, name: str, amount: float = 1) -> None:
        self.families.get(Counter, name).labels(**self._labels()).inc(amount)

    def set(self, name: str, value: float) -> None:
        if name not in self.gauges and name not in self.sources:
            self._gauge_child(name, lambda: self.gauge(name))
        self.gauges[name] = value

    def observe(self, name: str, seconds: float) -> None:
        self.families.get(Histogram, name).labels(**self._labels()).observe(max(0.0, seconds))

    def count(self, name: str) -> float:
        """A counter's value for this view (0 if never incremented): for tests and ``farm status``."""
        value = self.families.registry.get_sample_value(f"decentralml_{name}_total", self._labels())
        return value or 0.0

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.families.registry)


async def serve_metrics(metrics: Metrics, port: int, healthy) -> web.AppRunner:
    """Serve on 127.0.0.1:``port``; ``healthy()`` → (ok, detail) for /healthz."""

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def health(request: web.Request) -> web.Response:
        ok, detail = healthy()
        return web.json_response({"ok": ok, **detail}, status=200 if ok else 503)

    app = web.Application(middlewares=[bounded_writes()])  # a scraper that stops reading is cut
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
