"""HTTP/1.1 load from inside a lab pod, as its application would send it, recording every request's outcome.

Open loop: request i is due at ``i / rate`` seconds after the start, whatever the earlier ones are doing, and
goes out on one of ``connections`` keep-alive connections (a connection that fails is replaced for the next
request). Every outcome is kept, so a test can assert on counts, shares and time windows and print them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import trio
from prometheus_client.parser import text_string_to_metric_families

from ctl.lab.lab import Pod
from ctl.lab.lines import LineReader
from tests.netns.labs import bracket, connect_from


@dataclass(frozen=True)
class Outcome:
    sent: float
    """Seconds after the load started that the request went out."""
    latency: float
    """Seconds from sending it (connecting first, when the connection was new) to its whole response."""
    status: int | None
    """None: no response (the connection failed or the request timed out)."""
    pod: str | None
    """The pod whose demo app answered (named first in a 200's body)."""
    error: str
    """The response's x-triomesh-error, or what went wrong without a response; "" for none."""

    @property
    def ok(self) -> bool:
        return self.status == 200


class Load:
    def __init__(self, outcomes: Iterable[Outcome]) -> None:
        self.outcomes = sorted(outcomes, key=lambda outcome: outcome.sent)

    def window(self, start: float = 0.0, end: float = math.inf) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if start <= outcome.sent < end]

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]

    def by_pod(self, start: float = 0.0, end: float = math.inf) -> Counter[str]:
        return Counter(outcome.pod for outcome in self.window(start, end) if outcome.pod is not None)

    def shares(self, start: float = 0.0, end: float = math.inf) -> dict[str, float]:
        counts = self.by_pod(start, end)
        total = sum(counts.values()) or 1
        return {pod: counts[pod] / total for pod in sorted(counts)}

    def per_second(self) -> str:
        """One line per second of the run: the answering pods' counts and the failures."""
        lines = []
        last = int(self.outcomes[-1].sent) + 1 if self.outcomes else 0
        for second in range(last):
            counts = self.by_pod(second, second + 1)
            failed = sum(1 for outcome in self.window(second, second + 1) if not outcome.ok)
            shown = " ".join(f"{pod}={counts[pod]}" for pod in sorted(counts))
            lines.append(f"  t={second:>2}s {shown} failed={failed}")
        return "\n".join(lines)

    def summary(self) -> str:
        statuses = Counter(str(outcome.status) for outcome in self.outcomes)
        failures = self.failures()
        shown = [f"    t={o.sent:.3f}s status={o.status} after {o.latency * 1000:.0f} ms: {o.error}" for o in failures]
        return "\n".join(
            [
                f"{len(self.outcomes)} requests, statuses {dict(statuses)}, answered by {dict(self.by_pod())}",
                f"  failures ({len(failures)}):",
                *shown[:10],
                "per second:",
                self.per_second(),
            ]
        )


async def run_load(
    pod: Pod,
    host: str,
    port: int,
    *,
    rate: float,
    duration: float,
    path: str = "/load",
    connections: int = 16,
    timeout: float = 5.0,
    actions: Sequence[tuple[float, Callable[[], Awaitable[object]]]] = (),
) -> Load:
    """``rate`` requests per second for ``duration`` seconds from inside ``pod`` to ``host:port``; each of
    ``actions`` (seconds after the start, async function) runs in the middle of it."""
    total = round(rate * duration)
    due_send, due_receive = trio.open_memory_channel[int](total)
    outcomes: list[Outcome] = []
    started = trio.current_time()

    async def worker() -> None:
        client = _Client(pod, host, port)
        try:
            async for index in due_receive:
                outcomes.append(await client.request(f"{path}?n={index}", started, timeout))
        finally:
            await client.close()

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(worker)
        for at, action in actions:
            nursery.start_soon(_at, started + at, action)
        async with due_send:
            for index in range(total):
                await trio.sleep_until(started + index / rate)
                due_send.send_nowait(index)
    return Load(outcomes)


async def _at(when: float, action: Callable[[], Awaitable[object]]) -> None:
    await trio.sleep_until(when)
    await action()


async def request_once(pod: Pod, host: str, port: int, path: str, *, timeout: float = 5.0) -> Outcome:
    """One request on a new connection; its latency includes the connect (to the pod's own proxy)."""
    client = _Client(pod, host, port)
    try:
        return await client.request(path, trio.current_time(), timeout)
    finally:
        await client.close()


class _Client:
    """One keep-alive connection, opened when a request needs it and dropped after any failure."""

    def __init__(self, pod: Pod, host: str, port: int) -> None:
        self._pod, self._host, self._port = pod, host, port
        self._authority = f"{bracket(host)}:{port}"
        self._stream: trio.SocketStream | None = None
        self._reader: LineReader | None = None

    async def request(self, target: str, started: float, timeout: float) -> Outcome:
        sent = trio.current_time()
        status: int | None = None
        pod: str | None = None
        error = ""
        try:
            with trio.fail_after(timeout):
                status, error, body = await self._exchange(target)
            pod = body.split(" ", 1)[0] if status == 200 and body else None
        except trio.TooSlowError:
            error = f"no response within {timeout:g}s"
            await self.close()
        except (OSError, EOFError, ValueError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            await self.close()
        return Outcome(sent - started, trio.current_time() - sent, status, pod, error)

    async def _exchange(self, target: str) -> tuple[int, str, str]:
        if self._stream is None or self._reader is None:
            self._stream = await connect_from(self._pod, self._host, self._port)
            self._reader = LineReader(self._stream, max_line=16384)
        stream, reader = self._stream, self._reader
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: {self._authority}\r\n\r\n".encode())
        status_line = await reader.readline()
        if status_line is None:
            raise EOFError("the connection closed before a response")
        status = int(status_line.split(b" ", 2)[1])
        fields: dict[str, str] = {}
        while line := await reader.readline():
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            body = await reader.read_exactly(int(fields["content-length"]))
        else:  # no length: the body runs to the close
            chunks = []
            while (chunk := await reader.readline()) is not None:
                chunks.append(chunk)
            body = b"\n".join(chunks)
        if fields.get("connection", "").lower() == "close" or "content-length" not in fields:
            await self.close()
        return status, fields.get("x-triomesh-error", ""), body.decode("utf-8", errors="replace")

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
        self._stream = self._reader = None


async def service_samples(pod: Pod, name: str, service: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of metric ``name`` (full sample name) from ``pod``'s proxy whose parent_name is ``service``."""
    text = await trio.to_thread.run_sync(pod.admin().metrics)
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("parent_name") == service:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def service_total(pod: Pod, name: str, service: str, **labels: str) -> float:
    """The sum of ``name`` over ``service``'s samples that also carry ``labels``."""
    wanted: Sequence[tuple[str, str]] = list(labels.items())
    found = await service_samples(pod, name, service)
    return sum(value for key, value in found.items() if all(item in key for item in wanted))
