"""Metric families of the proxy's own identity (--identity), read at scrape time.

``identity_cert_expiration_timestamp_seconds`` is Linkerd's name, so its certificate-expiry alerts work as is;
the rest is ``triomesh_identity_*`` like the policy families. The SPIFFE ID is a label of one info series only:
a proxy has one identity at a time, so the label set stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True, slots=True)
class LoadedIdentity:
    spiffe_id: str
    serial: str
    """Hex, as ``openssl x509 -serial`` prints it (lower case)."""
    not_after: float
    """Unix time the certificate expires."""
    loaded_at: float


@dataclass(frozen=True, slots=True)
class IdentityReading:
    """The identity's state at one scrape."""

    loaded: LoadedIdentity | None
    """The current identity; None while none has been loaded."""
    valid: bool
    """An identity is loaded and valid now."""
    reloads_succeeded: int
    reloads_failed: int


class IdentityCollector(Collector):
    def __init__(self, read: Callable[[], IdentityReading]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        reading = self._read()
        reloads = CounterMetricFamily(
            "triomesh_identity_reloads",
            "Identity loads from --identity (at start and on each change), by result.",
            labels=["result"],
        )
        reloads.add_metric(["success"], reading.reloads_succeeded)
        reloads.add_metric(["failure"], reading.reloads_failed)
        yield reloads
        yield GaugeMetricFamily(
            "triomesh_identity_valid", "1 when the proxy holds an identity that is valid now.", value=int(reading.valid)
        )
        loaded = reading.loaded
        if loaded is None:
            return
        yield GaugeMetricFamily(
            "identity_cert_expiration_timestamp_seconds",
            "Unix time the proxy's current identity certificate expires.",
            value=loaded.not_after,
        )
        info = GaugeMetricFamily(
            "triomesh_identity_info", "The proxy's current identity.", labels=["spiffe_id", "serial"]
        )
        info.add_metric([loaded.spiffe_id, loaded.serial], 1)
        yield info
        yield GaugeMetricFamily(
            "triomesh_identity_last_reload_success_timestamp_seconds",
            "Unix time the current identity was loaded.",
            value=loaded.loaded_at,
        )
