"""Building the admin endpoint's JSON documents from the proxy's live state."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from dataplane.admin.schema import (
    ConfigReport,
    ConnectionsReport,
    IdentityInfo,
    ListenerInfo,
    ProblemInfo,
    ReloadErrorInfo,
    StatusReport,
)
from dataplane.connections import ConnectionTable
from dataplane.telemetry.metrics import ProxyState
from policy.load import encode_policy
from policy.store import PolicyStore, ReloadFailure

if TYPE_CHECKING:  # OpenSSL and cryptography are loaded only with --identity (about 13 MiB)
    from dataplane.svid.store import IdentityStore


@dataclass
class AdminView:
    """Everything the admin endpoint reads; the proxy owns and mutates the parts."""

    table: ConnectionTable
    store: PolicyStore
    state: ProxyState
    version: str
    listeners: list[ListenerInfo]
    identity: IdentityStore | None = None


def connections_report(view: AdminView) -> ConnectionsReport:
    table = view.table
    return ConnectionsReport(
        open=[rec.info(table.worker) for rec in table.iter_live()],
        recent=[rec.info(table.worker) for rec in table.recent],
        opened_total=table.opened_total,
        closed_total=table.closed_total,
    )


def status_report(view: AdminView) -> StatusReport:
    snap = view.store.current
    return StatusReport(
        ready=view.state.readiness()[0],
        draining=view.state.draining,
        version=view.version,
        pid=os.getpid(),
        started_at=view.state.started_at,
        uptime_seconds=max(0.0, time.time() - view.state.started_at),
        policy_name=snap.policy.name,
        policy_version=snap.version,
        policy_generation=snap.generation,
        policy_source=snap.source,
        last_reload_error=reload_error_info(view.store.last_error),
        listeners=view.listeners,
        connections_open=len(view.table.live),
        identity=identity_info(view.identity) if view.identity is not None else None,
    )


def identity_info(store: IdentityStore) -> IdentityInfo:
    current, error = store.current, store.last_error
    problem = store.problem()
    info = IdentityInfo(
        directory=str(store.directory),
        valid=problem is None,
        problem=problem,
        last_reload_error=None
        if error is None
        else ReloadErrorInfo(at=error.at, source=str(error.path), message=error.problem),
    )
    if current is None:
        return info
    identity = current.identity
    return msgspec.structs.replace(
        info,
        spiffe_id=str(identity.spiffe_id),
        serial=f"{identity.serial:x}",
        not_before=identity.not_before.timestamp(),
        not_after=identity.not_after.timestamp(),
        loaded_at=current.loaded_at,
        generation=current.generation,
    )


def config_report(view: AdminView) -> ConfigReport:
    snap = view.store.current
    return ConfigReport(
        policy=msgspec.Raw(encode_policy(snap.policy)),
        policy_version=snap.version,
        policy_generation=snap.generation,
        policy_source=snap.source,
        loaded_at=snap.loaded_at,
        last_reload_error=reload_error_info(view.store.last_error),
    )


def reload_error_info(failure: ReloadFailure | None) -> ReloadErrorInfo | None:
    if failure is None:
        return None
    return ReloadErrorInfo(
        at=failure.at,
        source=failure.source,
        message=failure.message,
        problems=[ProblemInfo(path=p.path, message=p.message) for p in failure.problems],
    )
