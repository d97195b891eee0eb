"""``lab status``: what a lab has, checked live (namespaces present, processes alive, proxies ready, the identity
each proxy serves)."""

from __future__ import annotations

from typing import Final

import msgspec
import trio

from ctl.client import AdminClient
from ctl.errors import CtlError
from ctl.lab.command import LabError
from ctl.lab.lab import PROXY_ADMIN
from ctl.lab.listening import listening_ports
from ctl.lab.network import list_netns
from ctl.lab.processes import is_alive
from ctl.lab.service import LabService
from ctl.lab.state import LabState, PodState, load_state, state_path
from ctl.lab.topology import APP_PORT, lab_namespaces
from ctl.metrics_text import excerpt
from ctl.table import Column, render_table
from dataplane.admin.schema import IdentityInfo

BALANCER_GAUGE: Final = "outbound_http_balancer_endpoints"  # {parent_name, parent_port, endpoint_state}


class PodStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    netns: str
    netns_present: bool
    ipv4: str
    ipv6: str | None
    proxy_pid: int | None
    proxy: str
    """"ready", "not ready: <why>", "alive, admin unreachable" or "not running"."""
    app_pid: int | None
    app: str
    """"listening on 8080", "running, not listening" or "not running"."""
    spiffe_id: str | None = None
    """The identity the proxy serves, from its /status (None: none, without mTLS, or the proxy is down)."""
    serial: str | None = None
    """That SVID's serial number, hex."""


class LabStatus(msgspec.Struct, frozen=True, kw_only=True):
    prefix: str
    mode: str | None
    """None when the state file is missing (the lab is then a crash leftover)."""
    mtls: bool = False
    namespaces: list[str]
    pods: list[PodStatus]
    service: LabService | None = None
    """Pod a's service (``lab up --service``)."""
    balancer: list[str] = []
    """The client proxy's ``outbound_http_balancer_endpoints`` lines about the service (ready/ejected counts)."""

    @property
    def healthy(self) -> bool:
        return self.mode is not None and all(pod.proxy == "ready" for pod in self.pods)


async def lab_status(prefix: str) -> LabStatus:
    """Error handling: ``LabError`` when nothing of the lab exists."""
    namespaces = lab_namespaces(prefix, await list_netns())
    state = load_state(prefix)
    if state is None:
        if not namespaces:
            raise LabError(f"no lab with prefix {prefix}: no state file ({state_path(prefix)}), no namespaces")
        return LabStatus(prefix=prefix, mode=None, namespaces=namespaces, pods=[])
    pods = [await _pod_status(pod, pod.netns in namespaces) for pod in state.pods]
    balancer = [] if state.service is None else await _balancer_lines(state, state.service)
    return LabStatus(
        prefix=prefix,
        mode=state.mode.value,
        mtls=state.mtls,
        namespaces=namespaces,
        pods=pods,
        service=state.service,
        balancer=balancer,
    )


async def _balancer_lines(state: LabState, service: LabService) -> list[str]:
    client = next((pod for pod in state.pods if pod.name == service.client), None)
    if client is None:
        return []
    try:
        text = await trio.to_thread.run_sync(AdminClient(PROXY_ADMIN, netns=client.netns, timeout=1.0).metrics)
    except CtlError:
        return []
    lines = excerpt(text, [BALANCER_GAUGE], [f'parent_name="{service.name}"'])
    return [line for line in lines if f'parent_name="{service.name}"' in line]


async def _pod_status(pod: PodState, present: bool) -> PodStatus:
    proxy = "not running"
    identity: IdentityInfo | None = None
    if pod.proxy_pid is not None and is_alive(pod.proxy_pid):
        client = AdminClient(PROXY_ADMIN, netns=pod.netns, timeout=1.0)
        try:
            ready, why = await trio.to_thread.run_sync(client.ready)
            proxy = "ready" if ready else why
            identity = (await trio.to_thread.run_sync(client.status)).identity
        except CtlError:
            proxy = "alive, admin unreachable"
    app = "not running"
    if pod.app_pid is not None and is_alive(pod.app_pid):
        listening = APP_PORT in listening_ports(pod.app_pid)
        app = f"listening on {APP_PORT}" if listening else "running, not listening"
    return PodStatus(
        name=pod.name,
        netns=pod.netns,
        netns_present=present,
        ipv4=pod.ipv4,
        ipv6=pod.ipv6,
        proxy_pid=pod.proxy_pid,
        proxy=proxy,
        app_pid=pod.app_pid,
        app=app,
        spiffe_id=None if identity is None else identity.spiffe_id,
        serial=None if identity is None else identity.serial,
    )


def render_lab_status(status: LabStatus) -> str:
    if status.mode is None:
        return (
            f"lab {status.prefix}: state file missing, but namespaces exist: {', '.join(status.namespaces)}\n"
            f"run `meshctl lab down --prefix {status.prefix}` to remove them\n"
        )
    columns = [
        Column("POD"),
        Column("NAMESPACE"),
        Column("IPV4"),
        Column("IPV6"),
        Column("PROXY PID", right=True),
        Column("PROXY"),
        Column("APP PID", right=True),
        Column("APP"),
        Column("IDENTITY"),
        Column("SERIAL"),
    ]
    rows = [
        [
            pod.name,
            pod.netns if pod.netns_present else f"{pod.netns} (missing)",
            pod.ipv4,
            pod.ipv6 or "-",
            str(pod.proxy_pid or "-"),
            pod.proxy,
            str(pod.app_pid or "-"),
            pod.app,
            pod.spiffe_id or "-",
            pod.serial or "-",
        ]
        for pod in status.pods
    ]
    security = "strict mTLS between pods" if status.mtls else "plaintext between pods (--no-mtls)"
    title = f"lab {status.prefix}: mode {status.mode}, {len(status.pods)} pod(s), {security}"
    lines = [title, *render_table(columns, rows)]
    if status.service is not None:
        lines.append(status.service.describe())
        lines.extend(f"  {line}" for line in status.balancer)
    return "\n".join(lines) + "\n"
