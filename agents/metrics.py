"""Counters and gauges an operator scrapes: ``/metrics`` (Prometheus text) and ``/healthz``."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from aiohttp import web

from decentralml_core.netguard import bounded_writes


class Metrics:
    def __init__(self, role: str) -> None:
        self.role = role
        self.counters: dict[str, float] = defaultdict(float)
        self.gauges: dict[str, float] = {}
        self.started = time.time()
        self.last_block_seen = time.time()
        self.sources: dict[str, Callable[[], float | None]] = {}

    def watch(self, name: str, source: Callable[[], float | None]) -> None:
        """A gauge also fed by ``source`` (read at each scrape; the larger value wins): ``chain_block`` from
        the chain client's stream, which moves on blocks without events the agent would never see."""
        self.sources[name] = source

    def gauge(self, name: str) -> float | None:
        values = [v for v in (self.gauges.get(name), self.sources[name]() if name in self.sources else None)
                  if v is not None]
        return max(values) if values else None

    def inc(self, name: str, amount: float = 1) -> None:
        self.counters[name] += amount

    def set(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def render(self) -> str:
        lines = []
        for name, value in sorted(self.counters.items()):
            lines += [f"# TYPE decentralml_{name}_total counter", f'decentralml_{name}_total{{role="{self.role}"}} {value:g}']
        gauges = {name: self.gauge(name) for name in {*self.gauges, *self.sources}}
        gauges = {name: value for name, value in gauges.items() if value is not None}
        for name, value in sorted({**gauges, "uptime_seconds": time.time() - self.started}.items()):
            lines += [f"# TYPE decentralml_{name} gauge", f'decentralml_{name}{{role="{self.role}"}} {value:g}']
        return "\n".join(lines) + "\n"


async def serve_metrics(metrics: Metrics, port: int, healthy) -> web.AppRunner:
    """Serve on 127.0.0.1:``port``; ``healthy()`` → (ok, detail) for /healthz."""

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain")

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
