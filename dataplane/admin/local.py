"""The admin endpoint's answers from this process's own state (one worker, or the whole proxy without --workers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from dataplane.admin.documents import AdminView, config_report, connections_report, status_report
from dataplane.admin.server import JSON, TEXT, Response
from dataplane.telemetry.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

PATHS: Final = ("/config", "/connections", "/live", "/metrics", "/ready", "/status")


def ready_response(ready: bool, draining: bool, reason: str) -> Response:
    if ready and not draining:
        return 200, TEXT, b"ready\n"
    return 503, TEXT, f"not ready: {'draining' if draining else reason}\n".encode()


class LocalAdmin:
    paths = PATHS

    def __init__(self, view: AdminView, render_metrics: Callable[[], bytes]) -> None:
        self._view = view
        self._render_metrics = render_metrics

    async def answer(self, path: str) -> Response | None:
        view = self._view
        match path:
            case "/live":
                return 200, TEXT, b"live\n"
            case "/ready":
                ready, reason = view.state.readiness()
                return ready_response(ready, view.state.draining, reason)
            case "/metrics":
                return 200, METRICS_CONTENT_TYPE, self._render_metrics()
            case "/connections":
                return 200, JSON, msgspec.json.encode(connections_report(view))
            case "/status":
                return 200, JSON, msgspec.json.encode(status_report(view))
            case "/config":
                return 200, JSON, msgspec.json.encode(config_report(view))
        return None
