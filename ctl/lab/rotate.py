"""``lab rotate``: re-issue pods' SVIDs into their identity directories and wait until every proxy uses them.

Rotation is what ``meshctl ca issue --out <pod>/identity`` does by hand: a new key and certificate replace the
old set in one rename, and the pod's proxy (which polls the directory twice a second) takes them for new
handshakes within a second while open connections keep theirs. This command also checks the result: it
returns once each proxy's ``/status`` reports the new serial, and fails naming the pods whose proxies did not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Final

import msgspec
import trio

from ctl.client import AdminClient
from ctl.errors import CtlError
from ctl.lab.command import LabError
from ctl.lab.lab import PROXY_ADMIN, PROXY_UID
from ctl.lab.state import PodState, load_state, state_path
from ctl.lab.svids import SVID_TTL, ca_dir, identity_dir, issue_to, load_ca
from dataplane.admin.schema import IdentityInfo

ROTATE_TIMEOUT: Final = 5.0  # seconds for every proxy to take its new SVID; the watcher needs about one
_POLL: Final = 0.05  # seconds between /status probes: fine enough to show how long a proxy took


class Rotation(msgspec.Struct, frozen=True, kw_only=True):
    pod: str
    spiffe_id: str
    old_serial: str | None
    """What the proxy served before (None when it had no identity or did not answer)."""
    new_serial: str
    seconds: float
    """From writing the new SVID to the proxy's /status reporting it."""

    def summary(self) -> str:
        return f"pod {self.pod}: {self.spiffe_id} serial {self.old_serial or '-'} -> {self.new_serial}" + (
            f" (proxy took it in {self.seconds:.1f}s)"
        )


async def rotate(
    prefix: str, pods: Sequence[str] = (), *, ttl: timedelta = SVID_TTL, timeout: float = ROTATE_TIMEOUT
) -> list[Rotation]:
    """Rotate the SVIDs of ``pods`` (every pod when empty) of lab ``prefix``; one Rotation per pod, in order.

    Error handling: LabError when the lab is not up, runs without mTLS, has no such pod, or a proxy does not
    report its new serial within ``timeout`` (the message says what that proxy reports instead).
    """
    state = load_state(prefix)
    if state is None:
        raise LabError(f"no lab with prefix {prefix} (no state file {state_path(prefix)}); `meshctl lab up` first")
    if not state.mtls:
        raise LabError(f"lab {prefix} runs without mTLS (--no-mtls): its pods have no identities to rotate")
    chosen = _choose(state.pods, pods, prefix)
    authority = load_ca(ca_dir(prefix))
    before = {pod.name: await _identity(pod) for pod in chosen}
    issued: dict[str, tuple[str, str, float]] = {}
    for pod in chosen:
        if pod.spiffe_id is None:
            raise LabError(f"lab {prefix}: pod {pod.name} has no identity in the state file")
        serial = issue_to(authority, pod.spiffe_id, identity_dir(prefix, pod.name), owner=PROXY_UID, ttl=ttl)
        issued[pod.name] = (pod.spiffe_id, serial, trio.current_time())
    taken: dict[str, float] = {}
    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            for pod in chosen:
                nursery.start_soon(_wait_serial, pod, issued[pod.name], taken)
    late = [pod for pod in chosen if pod.name not in taken]
    if late:
        lines = [f"lab {prefix}: new SVIDs written, but not taken within {timeout:g}s by:"]
        lines += [f"  pod {pod.name}: {_describe(await _identity(pod))}" for pod in late]
        raise LabError("\n".join(lines))
    return [
        Rotation(
            pod=pod.name,
            spiffe_id=issued[pod.name][0],
            old_serial=None if (old := before[pod.name]) is None else old.serial,
            new_serial=issued[pod.name][1],
            seconds=taken[pod.name],
        )
        for pod in chosen
    ]


def _choose(pods: Sequence[PodState], names: Sequence[str], prefix: str) -> list[PodState]:
    if not names:
        return list(pods)
    by_name = {pod.name: pod for pod in pods}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise LabError(f"lab {prefix} has no pod {', '.join(unknown)} (pods: {', '.join(by_name)})")
    return [by_name[name] for name in dict.fromkeys(names)]


async def _identity(pod: PodState) -> IdentityInfo | None:
    """What the pod's proxy reports about its identity; None when it does not answer."""
    client = AdminClient(PROXY_ADMIN, netns=pod.netns, timeout=1.0)
    try:
        return (await trio.to_thread.run_sync(client.status)).identity
    except CtlError:
        return None


async def _wait_serial(pod: PodState, issued: tuple[str, str, float], taken: dict[str, float]) -> None:
    _, serial, written = issued
    while True:
        info = await _identity(pod)
        if info is not None and info.serial == serial and info.valid:
            taken[pod.name] = trio.current_time() - written
            return
        await trio.sleep(_POLL)


def _describe(info: IdentityInfo | None) -> str:
    if info is None:
        return "the proxy's admin endpoint does not answer"
    held = f"serves {info.spiffe_id} serial {info.serial}" if info.serial else "has no identity"
    error = info.last_reload_error
    return held + (f"; last reload error: {error.source}: {error.message}" if error is not None else "")
