"""The composition root: builds the runtime, owns the root nursery, handles signals and the drain.

Task tree (ARCHITECTURE.md has the picture):
    root nursery
    ├── watch_policy            (started once watching; only with --policy)
    ├── watch_identity          (started after the first load, good or bad; only with --identity)
    ├── serve_admin             (started with the bound address)
    ├── RelayEngine.run         (every opaque relay of this worker, one epoll set)
    ├── ConnectionPool.run      (per direction: expires idle upstream HTTP/1.1 connections)
    ├── SharedH2Upstreams.run   (the shared HTTP/2 mesh connections carrying HTTP/1.1, one task each)
    ├── sweep_idle              (closes idle connections)
    ├── forget_idle_series      (drops metric series idle for --metrics-retain-idle)
    └── conns nursery           (one handler task per connection, each with its own relay child)
        └── acceptors nursery   (serve_listeners per listener; cancelled first on shutdown)
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from dataplane.admin.documents import AdminView
from dataplane.admin.local import LocalAdmin
from dataplane.admin.schema import ListenerInfo
from dataplane.admin.server import serve_admin
from dataplane.connections import ConnectionTable
from dataplane.drain import Drain
from dataplane.forward import ForwardSide
from dataplane.handler import Side, handle_connection
from dataplane.http.request_id import RequestIds
from dataplane.http1.engine import Http1Engine
from dataplane.http2.counters import H2Counters
from dataplane.http2.proxy import UPSTREAM_SETTINGS
from dataplane.http2.shared import SharedH2Upstreams
from dataplane.idle import sweep_idle
from dataplane.inbound import InboundSide
from dataplane.layer7 import pool_connector
from dataplane.net.addr import SockAddr
from dataplane.net.listener import (
    IPv6UnavailableError,
    listener_address,
    open_abstract_unix_listener,
    open_listener,
)
from dataplane.net.loop_guard import LoopGuard
from dataplane.net.sockopts import check_mark_permitted
from dataplane.outbound import OutboundSide
from dataplane.revoke import revoke_on_reload
from dataplane.runtime import HttpShared, Runtime
from dataplane.services.state import Services
from dataplane.settings import ProxySettings
from dataplane.signals import watch_shutdown_signals
from dataplane.tcp.engine import RelayEngine
from dataplane.telemetry.authz import AuthzCollector
from dataplane.telemetry.http_stats import HttpStats
from dataplane.telemetry.identity_metrics import IdentityCollector
from dataplane.telemetry.metrics import ProxyMetrics, ProxyState
from dataplane.telemetry.services import BalancerRow, ServiceCollector
from dataplane.telemetry.sweep import forget_idle_series
from dataplane.upstream.pool import ConnectionPool
from dataplane.version import VERSION
from policy.load import load_policy_file
from policy.model import DEFAULT_POLICY
from policy.store import PolicyStore
from policy.watch import watch_policy

if TYPE_CHECKING:
    from dataplane.svid.store import IdentityStore

log = logging.getLogger(__name__)


class Proxy:
    """One running proxy: listeners bound, policy loaded, ready to serve."""

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.state = ProxyState(started_at=time.time())
        if settings.policy_path is not None:
            policy, source = load_policy_file(settings.policy_path), settings.policy_path
        else:
            policy, source = DEFAULT_POLICY, "embedded-default"
        self.store = PolicyStore(policy, source=source)
        self.table = ConnectionTable(worker=settings.worker_index or 0, workers=settings.workers)
        own_ports = {settings.outbound_port, settings.inbound_port, settings.admin.port}
        self.guard = LoopGuard(frozenset(own_ports | {fwd.listen.port for fwd in settings.forwards}))
        self.engine = RelayEngine()
        drain = Drain()
        h2_upstreams = H2Counters()
        self.http = HttpShared(
            stats=HttpStats(),
            ids=RequestIds(),
            pools={},
            drain=drain,
            h2_upstreams=h2_upstreams,
            h1_engine=Http1Engine(drain=drain),
            carried=SharedH2Upstreams(settings=UPSTREAM_SETTINGS, counters=h2_upstreams),
        )
        self.identity: IdentityStore | None = None
        if settings.identity_dir is not None:
            # Only now: the TLS stack (OpenSSL, cryptography) costs about 13 MiB of RSS a plaintext proxy never uses.
            from dataplane.svid.store import IdentityStore
            from dataplane.tls.bridge import BridgeEngine

            self.identity = IdentityStore(Path(settings.identity_dir))
            self.bridges: BridgeEngine | None = BridgeEngine()
        else:
            self.bridges = None
        self.state.identity_problem = self._identity_problem
        self.runtime = Runtime(
            table=self.table,
            store=self.store,
            guard=self.guard,
            mark=settings.mark,
            inbound_mode=settings.inbound_mode,
            engine=self.engine,
            http=self.http,
            identity=self.identity,
            bridges=self.bridges,
            services=Services(on_removed=self._endpoints_removed),
        )
        # Shared keep-alive pools; the inbound one serves redirect mode only (under TPROXY each client connection
        # has its own, bound to the client's address).
        self.outbound, self.inbound = OutboundSide(), InboundSide(settings.inbound_mode)
        self.http.pools["outbound"] = ConnectionPool(pool_connector(self.outbound, self.runtime))
        self.http.pools["inbound"] = ConnectionPool(pool_connector(self.inbound, self.runtime))
        self.metrics = ProxyMetrics(
            self.table,
            self.store,
            self.state,
            VERSION,
            http=self.http.stats,
            h2=(self.http.h2_clients, self.http.h2_upstreams),
        )
        if self.identity is not None:
            self.metrics.registry.register(IdentityCollector(self.identity.reading))
        self.metrics.registry.register(AuthzCollector(self.runtime.authz))
        self.metrics.registry.register(ServiceCollector(self.runtime.services.counters, self._balancer_rows))
        self.listeners = self._bind()
        self.view = AdminView(
            table=self.table,
            store=self.store,
            state=self.state,
            version=VERSION,
            listeners=[ListenerInfo(name=name, address=str(listener_address(lst))) for name, _, lst in self.listeners],
            identity=self.identity,
        )

    def _balancer_rows(self) -> Iterator[BalancerRow]:
        """The balancers of the live policy's service ports (a removed service's state goes once it is idle)."""
        current = {plan.key for plan in self.store.current.index.services.plans}
        return self.runtime.services.rows(current)

    def _endpoints_removed(self, endpoints: list[tuple[str, int]]) -> None:
        """A reload removed these service endpoints: their idle keep-alive connections close now (busy ones finish
        their requests first: removed endpoints drain, they are not cut)."""
        pool = self.http.pools.get("outbound")
        if pool is not None:
            for endpoint in endpoints:
                pool.close_key(SockAddr(*endpoint))

    def _identity_problem(self) -> str | None:
        """Why the proxy lacks the identity it needs (for /ready), or None."""
        if self.identity is not None:
            return self.identity.problem()
        if self.store.current.index.requires_identity:
            return "the policy needs one (a strict mTLS port or a meshed destination) but there is no --identity"
        return None

    def _bind(self) -> list[tuple[str, Side, trio.SocketListener]]:
        s = self.settings
        outbound, inbound = self.outbound, self.inbound
        tproxy = s.inbound_mode == "tproxy"
        wanted: list[tuple[str, Side, SockAddr, bool]] = [
            ("outbound", outbound, SockAddr("127.0.0.1", s.outbound_port), False),
            ("inbound", inbound, SockAddr("0.0.0.0", s.inbound_port), tproxy),
        ]
        if s.ipv6 != "off":
            wanted += [
                ("outbound-ipv6", outbound, SockAddr("::1", s.outbound_port), False),
                ("inbound-ipv6", inbound, SockAddr("::", s.inbound_port), tproxy),
            ]
        # Asked for explicitly, so bound whatever --ipv6 says: a forward that cannot be bound fails the start.
        wanted += [(fwd.name, ForwardSide(fwd.upstream, fwd.direction), fwd.listen, False) for fwd in s.forwards]
        bound: list[tuple[str, Side, trio.SocketListener]] = []
        try:
            for name, side, addr, transparent in wanted:
                try:
                    listener = open_listener(addr, transparent=transparent, reuse_port=s.workers > 1)
                    bound.append((name, side, listener))
                except IPv6UnavailableError as exc:
                    if s.ipv6 == "on" or isinstance(side, ForwardSide):
                        raise OSError(exc.errno, f"--ipv6 on, but {exc.strerror}") from None
                    log.info("no IPv6 in this namespace (%s): serving IPv4 only", exc.strerror)
        except BaseException:
            for _, _, lst in bound:
                lst.socket.close()
            raise
        return bound

    async def serve(
        self, shutdown: trio.Event, *, task_status: trio.TaskStatus[SockAddr] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``shutdown`` is set, then drain; ``started`` with the admin address once ready."""
        s = self.settings
        async with trio.open_nursery() as root:
            if s.policy_path is not None:
                await root.start(watch_policy, s.policy_path, self.store)
            if self.identity is not None:
                from dataplane.svid.watch import watch_identity

                await root.start(watch_identity, self.identity)
            if s.worker_admin is not None:  # a worker: only the supervisor talks to it, over a private socket
                admin_listener = open_abstract_unix_listener(s.worker_admin)
                admin = s.admin
            else:
                admin_listener = open_listener(s.admin)
                admin = listener_address(admin_listener)
            await root.start(serve_admin, admin_listener, LocalAdmin(self.view, self.metrics.render))
            await root.start(self.engine.run)
            if self.bridges is not None:
                await root.start(self.bridges.run)
            if self.http.h1_engine is not None:
                await root.start(self.http.h1_engine.run)
            if self.http.carried is not None:
                await root.start(self.http.carried.run)
            for pool in self.http.pools.values():
                await root.start(pool.run)
            await root.start(revoke_on_reload, self.store, self.table)
            await root.start(self.runtime.services.departures.run)
            root.start_soon(sweep_idle, self.table, self.store)
            root.start_soon(forget_idle_series, self.table, self.http.stats, s.metrics_retain_idle)
            async with trio.open_nursery() as conns:
                async with trio.open_nursery() as acceptors:
                    for _, side, listener in self.listeners:
                        handler = functools.partial(handle_connection, side=side, rt=self.runtime)
                        await acceptors.start(
                            functools.partial(trio.serve_listeners, handler, [listener], handler_nursery=conns)
                        )
                    self.state.ready = True
                    self.state.not_ready_reason = ""
                    log.info(
                        "%s: %s; admin on %s; policy %s (%s)",
                        "ready" if self.state.readiness()[0] else "listening, not ready",
                        ", ".join(f"{li.name} {li.address}" for li in self.view.listeners),
                        admin,
                        self.store.current.version,
                        self.store.current.source,
                    )
                    task_status.started(admin)
                    await shutdown.wait()
                    # Cancelling serve_listeners closes the listening sockets: new connects are refused now.
                    acceptors.cancel_scope.cancel(reason="shutting down")
                self.state.ready = False
                self.state.draining = True
                self.http.drain.start()  # keep-alive HTTP connections: idle ones close, busy ones after their exchange
                log.info("draining %d open connections for up to %gs", len(self.table.live), s.drain_timeout)
                root.start_soon(self._force_close_after, s.drain_timeout)
                # Handlers are done once their connection is in the relay engine; the engine's are not.
                await self.table.wait_empty()
            log.info("drained; exiting")
            root.cancel_scope.cancel(reason="drained")

    async def _force_close_after(self, timeout: float) -> None:
        await trio.sleep(timeout)
        closed = self.table.cancel_all("drain_timeout")
        if closed:
            log.warning("drain timeout: closing %d connections that are still open", closed)


async def _run(settings: ProxySettings) -> None:
    proxy = Proxy(settings)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        if settings.worker_lifeline is not None:
            nursery.start_soon(_drain_when_supervisor_dies, settings.worker_lifeline, shutdown)
        nursery.start_soon(
            functools.partial(
                watch_shutdown_signals,
                shutdown,
                nursery.cancel_scope,
                draining="no longer ready, closing listeners, draining",
                stopping="stopping without waiting for connections",
            )
        )
        await proxy.serve(shutdown)
        nursery.cancel_scope.cancel(reason="proxy stopped")


async def _drain_when_supervisor_dies(lifeline: int, shutdown: trio.Event) -> None:
    """A worker holds the read end of a pipe only its supervisor writes to: end of file means the supervisor
    is gone (even by SIGKILL), and the worker drains and exits instead of serving on unsupervised."""
    await trio.lowlevel.wait_readable(lifeline)
    if not shutdown.is_set():
        log.warning("supervisor is gone: draining and exiting")
        shutdown.set()


def main(argv: Sequence[str] | None = None) -> int:
    from dataplane.settings import parse_args
    from dataplane.supervisor import WorkerStartError, run_supervisor
    from dataplane.telemetry.logs import configure_logging
    from policy.load import PolicyError

    args = list(sys.argv[1:] if argv is None else argv)
    settings = parse_args(args)
    configure_logging(settings.log_level, worker=settings.worker_index)
    problem = check_mark_permitted(settings.mark)
    if problem is not None:
        log.error("cannot start: %s", problem)
        return 1
    try:
        if settings.worker_index is not None:
            trio.run(_run, settings)
        elif settings.workers > 1:
            load_policy_file(settings.policy_path) if settings.policy_path else None  # a bad file is fatal now
            trio.run(run_supervisor, settings, args)
        else:
            trio.run(_run, settings)
    except PolicyError as exc:
        log.error("cannot start: invalid policy: %s", exc)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc.strerror or exc)
        return 1
    except WorkerStartError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
