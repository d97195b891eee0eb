"""Proof that the two hops really spoke mTLS, read from what each hop reports. Pure: text in, a problem out.

A mesh that silently fell back to plaintext would be benchmarked as the cheaper thing it did instead, so every
mTLS measurement is refused unless both hops account for every connection as TLS with the expected peer:
triomesh's ``/connections`` records (``tls`` true, ``client_id`` at hop 2, ``server_id`` at hop 1), Envoy's TLS
statistics (handshakes, all of them TLS 1.3, on hop 2's listener and on hop 1's cluster).
"""

from __future__ import annotations

from typing import Final

import msgspec

_ENVOY_LISTENER: Final = "listener.{address}_{port}.ssl."
_ENVOY_CLUSTER: Final = "cluster.upstream.ssl."
# A mesh TLS connection's ``tls`` field: ``"true"`` (Linkerd's label value, as the metrics have it) or JSON true.
_MESH_TLS: Final = (True, "true")


def triomesh_problem(connections: bytes, *, hop: str, direction: str, peer_key: str, peer_id: str) -> str | None:
    """Why ``hop``'s ``/connections`` answer does not show every ``direction`` connection as mesh TLS with
    ``peer_key`` (``client_id`` or ``server_id``) equal to ``peer_id``; None when it does."""
    try:
        report = msgspec.json.decode(connections)
    except msgspec.DecodeError as exc:
        return f"{hop}: /connections is not JSON: {exc}"
    if not isinstance(report, dict):
        return f"{hop}: /connections is not a JSON object"
    records = [
        record
        for part in ("open", "recent")
        for record in report.get(part) or []
        if isinstance(record, dict) and record.get("direction") == direction
    ]
    if not records:
        return f"{hop}: no {direction} connection recorded"
    for record in records:
        where = f"{hop}: {direction} connection {record.get('id')} from {record.get('client')}"
        if record.get("tls") not in _MESH_TLS:
            return f"{where} was not mesh TLS (tls={record.get('tls')!r}): a plaintext fallback"
        if record.get(peer_key) != peer_id:
            return f"{where} has {peer_key}={record.get(peer_key)!r}, not {peer_id}"
    return None


def envoy_problem(stats: str, *, hop: str, listener: tuple[str, int] | None = None) -> str | None:
    """Why an Envoy hop's ``/stats`` text does not show TLS 1.3 handshakes only: on ``listener`` (hop 2's
    downstream side) or, without it, on the ``upstream`` cluster (hop 1's side); None when it does."""
    prefix = _ENVOY_CLUSTER if listener is None else _ENVOY_LISTENER.format(address=listener[0], port=listener[1])
    counters = _envoy_counters(stats, prefix)
    handshakes = counters.get("handshake", 0)
    if handshakes == 0:
        return f"{hop}: no TLS handshake counted ({prefix}handshake)"
    tls13 = counters.get("versions.TLSv1.3", 0)
    if tls13 != handshakes:
        return f"{hop}: {handshakes} TLS handshakes, of which {tls13} TLS 1.3"
    return None


def _envoy_counters(stats: str, prefix: str) -> dict[str, int]:
    """``name: value`` lines of Envoy's ``/stats`` under ``prefix``, with integer values, keyed without it."""
    found: dict[str, int] = {}
    for line in stats.splitlines():
        name, sep, value = line.partition(": ")
        if sep and name.startswith(prefix) and value.strip().isdigit():
            found[name.removeprefix(prefix)] = int(value)
    return found
