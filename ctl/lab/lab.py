"""``Lab``: a small mesh of network-namespace pods built from the real parts on this machine.

Per pod: a namespace with a veth to the hub's bridge, lo up, an IPv4 (and optionally IPv6) address;
``mesh-init`` rules; ``mesh-proxy`` as UID 1337 with NET_ADMIN/NET_RAW (SO_MARK, IP_TRANSPARENT), its policy
file and (by default) its own SPIFFE identity; and the demo app on port 8080 as root, so its own connections are
intercepted like any application's. With mTLS (the default) the lab has its own root CA, every pod an SVID
(``spiffe://cluster.local/ns/<prefix>/sa/<pod>``) and a policy with strict mTLS in and mTLS to every other pod.
With ``service=True`` pod a is also the client of a service over the other pods' demo apps (``ctl.lab.service``).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

import msgspec
import trio

from ctl.client import DEFAULT_TIMEOUT, AdminAddress, AdminClient
from ctl.errors import CtlError
from ctl.lab.command import LabError, last_line, run
from ctl.lab.listening import listening_ports
from ctl.lab.network import add_routes, build_hub, build_pod, list_netns
from ctl.lab.pod_policy import POLICY_FILE, PolicyDocument, pod_policy, write_policy
from ctl.lab.processes import is_alive, log_tail, marker, spawn_detached, wait_exit
from ctl.lab.service import LabService, lab_service, service_routes
from ctl.lab.state import LabState, PodState, lab_dir, save_state
from ctl.lab.svids import ca_dir, create_ca, identity_dir, issue_to
from ctl.lab.teardown import Teardown, teardown
from ctl.lab.topology import (
    APP_PORT,
    DEFAULT_PREFIX,
    HTTP_PORT,
    Mode,
    PodPlan,
    Topology,
    lab_namespaces,
    plan,
    pod_spiffe_id,
)

PROXY_ADMIN: Final = AdminAddress("127.0.0.1", 15000)  # mesh-proxy's default --admin, inside each pod
PROXY_UID: Final = 1337  # the UID mesh-init exempts from interception by default
READY_TIMEOUT: Final = 20.0  # seconds for every pod's proxy and app to come up; a cold start takes ~1-2 s
_POLL: Final = 0.1  # seconds between readiness probes
# The lab is torn down often; a lab proxy has no long-lived clients worth a 30 s drain.
_PROXY_DRAIN: Final = "1s"
_KILL_WAIT: Final = 5.0  # seconds for a SIGKILLed app to be gone; it takes milliseconds


class Pod:
    """One pod of a lab: where it is and how to reach its proxy."""

    def __init__(
        self, topology: Topology, plan: PodPlan, directory: Path, *, mtls: bool, service: LabService | None = None
    ) -> None:
        self.topology = topology
        self.plan = plan
        self.mtls = mtls
        self.service = service
        self.log_dir = directory / plan.name
        self.policy_path = self.log_dir / POLICY_FILE
        """The proxy's policy file; ``write_policy`` (or any editor) changes it, the proxy reloads within 1 s."""

    def __repr__(self) -> str:
        return f"<Pod {self.name} netns={self.netns} address={self.address}>"

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def netns(self) -> str:
        return self.plan.netns

    @property
    def address(self) -> str:
        return self.plan.ipv4

    @property
    def ipv6(self) -> str | None:
        return self.plan.ipv6

    @property
    def spiffe_id(self) -> str | None:
        """The pod's identity; None in a lab without mTLS."""
        return pod_spiffe_id(self.topology.prefix, self.name) if self.mtls else None

    @property
    def identity_dir(self) -> Path | None:
        """The directory its proxy watches (``--identity``); None in a lab without mTLS."""
        return identity_dir(self.topology.prefix, self.name) if self.mtls else None

    def policy(self) -> PolicyDocument:
        """The policy ``lab up`` wrote for this pod, as plain data to change and ``write_policy`` back."""
        return pod_policy(self.topology, self.plan, mtls=self.mtls, service=self.service)

    def admin(self, *, timeout: float = DEFAULT_TIMEOUT) -> AdminClient:
        """A client for this pod's proxy admin endpoint (127.0.0.1:15000 inside the pod)."""
        return AdminClient(PROXY_ADMIN, netns=self.netns, timeout=timeout)


class Lab:
    """Build with ``await Lab(prefix, pods, mode, ipv6).up()``, remove with ``await lab.down()``.

    ``mtls=False`` builds the lab as it was before mesh identities: no CA, no ``--identity``, and a policy file
    with the defaults only (plaintext between pods).

    Resource handling: ``up`` either returns a fully ready lab or removes everything it made before raising.
    ``down`` (or ``ctl.lab.teardown.teardown(prefix)``) removes everything, also after a crash.
    """

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        pods: int = 3,
        mode: Mode = Mode.REDIRECT,
        ipv6: bool = True,
        *,
        mtls: bool = True,
        service: bool = False,
        weights: Sequence[int] | None = None,
        venv: Path | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.topology = plan(prefix, pods, ipv6=ipv6)
        self.mode = mode
        self.ipv6 = ipv6
        self.mtls = mtls
        self.service = lab_service(self.topology, weights) if service else None
        """Pod a's service over the other pods (``service=True``; ``weights``: one per endpoint pod)."""
        self.venv = Path(sys.prefix) if venv is None else venv
        self.ready_timeout = ready_timeout
        self.directory = lab_dir(prefix)
        self.pods = [
            Pod(self.topology, pod, self.directory, mtls=mtls, service=self.service) for pod in self.topology.pods
        ]
        self.state: LabState | None = None

    @classmethod
    def from_state(cls, state: LabState) -> Lab:
        service = state.service
        weights = None if service is None else [endpoint.weight for endpoint in service.endpoints]
        lab = cls(
            state.prefix,
            len(state.pods),
            state.mode,
            state.ipv6,
            mtls=state.mtls,
            service=service is not None,
            weights=weights,
            venv=Path(state.venv),
        )
        lab.state = state
        return lab

    def __repr__(self) -> str:
        return f"<Lab {self.prefix} pods={len(self.pods)} mode={self.mode.value} ipv6={self.ipv6} mtls={self.mtls}>"

    @property
    def prefix(self) -> str:
        return self.topology.prefix

    def pod(self, name: str) -> Pod:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise LabError(f"lab {self.prefix} has no pod {name!r} (pods: {', '.join(p.name for p in self.pods)})")

    async def up(self) -> LabState:
        existing = lab_namespaces(self.prefix, await list_netns())
        if existing:
            raise LabError(
                f"lab {self.prefix} is already up (namespaces {', '.join(existing)});"
                f" run `meshctl lab down --prefix {self.prefix}` first"
            )
        tools = self._tools()
        try:
            return await self._build(tools)
        except BaseException:
            with trio.CancelScope(shield=True):
                await teardown(self.prefix, keep_logs=True)
            raise

    async def down(self) -> Teardown:
        self.state = None
        return await teardown(self.prefix)

    # === the demo apps, for tests that make an endpoint fail ===

    async def kill_app(self, name: str) -> int:
        """SIGKILL pod ``name``'s demo app, as a crash would (no clean close of its connections); its pid."""
        pid = self._app_pid(name)
        if pid is None or not is_alive(pid):
            raise LabError(f"the demo app of pod {name} is not running (`meshctl lab start-app {name}` starts it)")
        os.kill(pid, signal.SIGKILL)
        with trio.move_on_after(_KILL_WAIT):
            await wait_exit(pid)
        is_alive(pid)  # reaps it when it is our child
        self._record_app(name, None)
        return pid

    async def start_app(self, name: str) -> int:
        """Start pod ``name``'s demo app again (after ``kill_app``) and wait until it listens; its pid."""
        pod = self.pod(name)
        pid = self._app_pid(name)
        if pid is not None and is_alive(pid):
            raise LabError(f"the demo app of pod {name} is already running (pid {pid})")
        pid = self._start_app(pod, self._tools()["python"])
        self._record_app(name, pid)
        with trio.move_on_after(self.ready_timeout):
            while {APP_PORT, HTTP_PORT} - listening_ports(pid):
                if not is_alive(pid):
                    log = pod.log_dir / "app.log"
                    raise LabError(f"demo app in pod {name} exited; end of {log}:\n{log_tail(log)}")
                await trio.sleep(_POLL)
            return pid
        raise LabError(f"demo app in pod {name} (pid {pid}) not listening after {self.ready_timeout:g}s")

    # === start-up steps ===

    async def _build(self, tools: dict[str, str]) -> LabState:
        await build_hub(self.topology)
        for pod in self.pods:
            pod.log_dir.mkdir(parents=True, exist_ok=True)
            await build_pod(self.topology, pod.plan)
        if self.service is not None:
            await add_routes(self.pod(self.service.client).netns, service_routes(self.service))
        self._record({})
        self._provision()
        await self._for_each_pod(lambda pod: self._mesh_init(pod, tools["mesh-init"]))
        pids = {pod.name: self._start(pod, tools) for pod in self.pods}
        state = self._record(pids)
        with trio.move_on_after(self.ready_timeout) as waiting:
            await self._for_each_pod(lambda pod: self._wait_ready(pod, *pids[pod.name]))
        if waiting.cancelled_caught:
            raise LabError(self._not_ready_message(pids))
        return state

    def _provision(self) -> None:
        """Each pod's policy file and, with mTLS, the lab's root CA and every pod's SVID (key owned by the proxy)."""
        authority = create_ca(ca_dir(self.prefix)) if self.mtls else None
        for pod in self.pods:
            write_policy(pod.policy_path, pod.policy())
            if authority is not None and pod.spiffe_id is not None and pod.identity_dir is not None:
                issue_to(authority, pod.spiffe_id, pod.identity_dir, owner=PROXY_UID)

    async def _for_each_pod(self, step: Callable[[Pod], Awaitable[None]]) -> None:
        """Runs ``step`` for all pods at once; their LabErrors come back as one LabError, not a group."""
        try:
            async with trio.open_nursery() as nursery:
                for pod in self.pods:
                    nursery.start_soon(step, pod)
        except ExceptionGroup as group:
            errors, others = group.split(LabError)
            if errors is None or others is not None:
                raise
            raise LabError("\n".join(str(error) for error in _leaves(errors))) from None

    def _tools(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name in ("mesh-init", "mesh-proxy", "python"):
            path = self.venv / "bin" / name
            if not path.exists():
                raise LabError(f"{path} not found: install triomesh into {self.venv} (`make setup`)")
            found[name] = str(path)
        for name in ("ip", "setpriv"):
            where = shutil.which(name)
            if where is None:
                raise LabError(f"{name} not found on PATH (Debian packages iproute2, util-linux)")
            found[name] = where
        return found

    async def _mesh_init(self, pod: Pod, mesh_init: str) -> None:
        argv = ["ip", "netns", "exec", pod.netns, mesh_init, "--mode", self.mode.value]
        done = await run(argv, check=False)
        log = pod.log_dir / "init.log"
        log.write_bytes(done.stdout + done.stderr)
        if done.returncode != 0:
            raise LabError(
                f"mesh-init failed in pod {pod.name} (exit {done.returncode}): {last_line(done.stderr)}"
                f" (full output in {log})"
            )

    def _start(self, pod: Pod, tools: dict[str, str]) -> tuple[int, int]:
        """Starts the demo app and the proxy; returns (proxy pid, app pid)."""
        enter = ["ip", "netns", "exec", pod.netns]
        app = self._start_app(pod, tools["python"])
        as_proxy_user = [
            tools["setpriv"],
            f"--reuid={PROXY_UID}",
            f"--regid={PROXY_UID}",
            "--clear-groups",
            "--inh-caps=+net_admin,+net_raw",
            "--ambient-caps=+net_admin,+net_raw",
            "--",
        ]
        proxy_flags = [
            "--admin",
            f"{PROXY_ADMIN.host}:{PROXY_ADMIN.port}",
            "--inbound-mode",
            self.mode.value,
            "--drain-timeout",
            _PROXY_DRAIN,
            "--log-level",
            "info",
            "--policy",
            str(pod.policy_path),
        ]
        if pod.identity_dir is not None:
            proxy_flags += ["--identity", str(pod.identity_dir)]
        proxy = spawn_detached(
            [*enter, *as_proxy_user, tools["mesh-proxy"], *proxy_flags],
            log=pod.log_dir / "proxy.log",
            mark=marker(self.prefix, pod.name, "proxy"),
        )
        return proxy, app

    def _start_app(self, pod: Pod, python: str) -> int:
        ports = ["--port", str(APP_PORT), "--http-port", str(HTTP_PORT)]
        return spawn_detached(
            ["ip", "netns", "exec", pod.netns, python, "-m", "ctl.lab.demo_app", "--name", pod.name, *ports],
            log=pod.log_dir / "app.log",
            mark=marker(self.prefix, pod.name, "app"),
        )

    def _app_pid(self, name: str) -> int | None:
        self.pod(name)  # LabError for a pod the lab does not have
        if self.state is None:
            raise LabError(f"lab {self.prefix} is not up (no state)")
        return next(pod.app_pid for pod in self.state.pods if pod.name == name)

    def _record_app(self, name: str, pid: int | None) -> None:
        if self.state is None:
            raise LabError(f"lab {self.prefix} is not up (no state)")
        pods = tuple(msgspec.structs.replace(pod, app_pid=pid) if pod.name == name else pod for pod in self.state.pods)
        self.state = msgspec.structs.replace(self.state, pods=pods)
        save_state(self.state)

    def _record(self, pids: dict[str, tuple[int, int]]) -> LabState:
        pods = tuple(
            PodState(
                name=pod.name,
                netns=pod.netns,
                ipv4=pod.address,
                ipv6=pod.ipv6,
                proxy_pid=pids[pod.name][0] if pod.name in pids else None,
                app_pid=pids[pod.name][1] if pod.name in pids else None,
                log_dir=str(pod.log_dir),
                spiffe_id=pod.spiffe_id,
            )
            for pod in self.pods
        )
        self.state = LabState(
            prefix=self.prefix,
            mode=self.mode,
            ipv6=self.ipv6,
            mtls=self.mtls,
            hub_netns=self.topology.hub_netns,
            venv=str(self.venv),
            created_at=time.time(),
            pods=pods,
            service=self.service,
        )
        save_state(self.state)
        return self.state

    async def _wait_ready(self, pod: Pod, proxy_pid: int, app_pid: int) -> None:
        """Polls until the proxy's /ready is 200 and the app listens; fails fast if either exits."""
        client = pod.admin(timeout=1.0)
        while True:
            for role, pid in (("mesh-proxy", proxy_pid), ("demo app", app_pid)):
                if not is_alive(pid):
                    log = pod.log_dir / ("proxy.log" if role == "mesh-proxy" else "app.log")
                    raise LabError(f"{role} in pod {pod.name} exited during start-up; end of {log}:\n{log_tail(log)}")
            try:
                ready, _ = await trio.to_thread.run_sync(client.ready)
            except CtlError:
                ready = False
            if ready and {APP_PORT, HTTP_PORT} <= listening_ports(app_pid):
                return
            await trio.sleep(_POLL)

    def _not_ready_message(self, pids: dict[str, tuple[int, int]]) -> str:
        lines = [f"lab {self.prefix} not ready after {self.ready_timeout:g}s:"]
        for pod in self.pods:
            proxy_pid, app_pid = pids[pod.name]
            try:
                ready, why = pod.admin(timeout=1.0).ready()
                proxy = "ready" if ready else why
            except CtlError as exc:
                proxy = str(exc)
            app = "listening" if APP_PORT in listening_ports(app_pid) else f"not listening on {APP_PORT}"
            lines.append(f"  pod {pod.name}: proxy (pid {proxy_pid}): {proxy}; app (pid {app_pid}): {app}")
        lines.append(f"  logs: {self.directory}/<pod>/proxy.log")
        return "\n".join(lines)


def _leaves(group: BaseExceptionGroup[LabError]) -> list[LabError]:
    found: list[LabError] = []
    for error in group.exceptions:
        found.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return found
