"""Closing the open inbound connections a policy reload no longer allows (reason ``policy_revoked``).

A new policy applies to new connections and requests; an open connection keeps running unless the new rules no
longer admit its client at all: an opaque connection its port's rules no longer allow, an HTTP connection whose
client no rule admits any more, or a plaintext connection on a port that became ``strict``. Those are closed
with reason ``policy_revoked``, right after the reload; every other connection continues untouched.
"""

from __future__ import annotations

import logging

import trio

from dataplane.admin.schema import PER_REQUEST_PROTOCOLS
from dataplane.connections import ConnectionTable, ConnRecord
from policy.index import PolicyIndex, keeps_inbound
from policy.store import PolicyStore

log = logging.getLogger(__name__)

REASON = "policy_revoked"


def still_allowed(rec: ConnRecord, index: PolicyIndex) -> bool:
    """Whether the policy in ``index`` still lets this open connection run."""
    if rec.direction != "inbound" or rec.state != "open":
        return True
    return keeps_inbound(
        index.inbound(rec.target.port),
        mesh_tls=rec.tls == "true",
        peer_id=rec.peer_id,
        per_request=rec.protocol in PER_REQUEST_PROTOCOLS,
    )


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
