"""Closing the open inbound connections a policy reload no longer allows (reason ``policy_revoked``).

A new policy applies to new connections and requests; an open connection keeps running unless the new rules no
longer admit its client at all: an opaque connection its port's rules no longer allow, an HTTP connection whose
client no rule admits any more, or a plaintext connection on a port that became ``strict``. Those are closed
with reason ``policy_revoked``, right after the reload; every other connection continues untouched.
"""

from __future__ import annotations

import logging

import trio

from dataplane.connections import ConnectionTable, ConnRecord
from dataplane.mtls.inner import CARRIED_HTTP1
from policy.index import PolicyIndex
from policy.model import MtlsMode
from policy.store import PolicyStore

log = logging.getLogger(__name__)

REASON = "policy_revoked"
_HTTP = ("http1", "h2", CARRIED_HTTP1)  # authorized per request: only a client no rule admits is cut


def still_allowed(rec: ConnRecord, index: PolicyIndex) -> bool:
    """Whether the policy in ``index`` still lets this open connection run."""
    if rec.direction != "inbound" or rec.state != "open":
        return True
    settings = index.inbound(rec.target.port)
    if settings.excluded:
        return True
    if settings.mtls is MtlsMode.STRICT and rec.tls != "true":
        return False
    if rec.protocol in _HTTP:
        return settings.authorization.admits(rec.peer_id)
    return settings.authorization.allows_tcp(rec.peer_id)


def revoke(table: ConnectionTable, index: PolicyIndex) -> int:
    """Close every live connection ``index`` no longer allows; returns how many."""
    closed = 0
    for rec in table.iter_live():
        if rec.close_reason is None and not still_allowed(rec, index):
            who = rec.peer_id or "a plaintext client"
            log.info(
                "conn=%d inbound %s (%s) -> %s: no longer allowed by the policy", rec.id, rec.client, who, rec.target
            )
            rec.cancel(REASON)
            closed += 1
    return closed


async def revoke_on_reload(
    store: PolicyStore, table: ConnectionTable, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """After every applied reload, close the connections the new policy revokes."""
    generation = store.current.generation
    task_status.started()
    while True:
        snapshot = await store.wait_for_generation(generation)
        generation = snapshot.generation
        closed = revoke(table, snapshot.index)
        if closed:
            log.warning("policy %s revoked %d open connection(s)", snapshot.version, closed)
