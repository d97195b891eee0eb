"""PolicyStore: generations, rejection keeps the current snapshot, and waiting for a new generation."""

from __future__ import annotations

import time

import trio
import trio.testing

from policy.load import Problem, decode_policy, policy_version
from policy.model import DEFAULT_POLICY, Protocol
from policy.store import EMBEDDED_DEFAULT_SOURCE, PolicyStore, ReloadFailure

FIRST = decode_policy(b"name: first", "yaml")
SECOND = decode_policy(b"name: second\ninbound: {default_protocol: opaque}", "yaml")
FAILURE = ReloadFailure(
    at=1.0,
    source="/etc/mesh/policy.yaml",
    message="invalid policy, keeping policy x: inbound.ports[0].port: expected an integer from 1 to 65535",
    problems=(Problem("inbound.ports[0].port", "expected an integer from 1 to 65535, got 0"),),
)


def test_a_new_store_holds_generation_one() -> None:
    before = time.time()
    store = PolicyStore(FIRST, source="/etc/mesh/policy.yaml")
    snapshot = store.current
    assert snapshot.policy == FIRST
    assert snapshot.generation == 1
    assert snapshot.version == policy_version(FIRST)
    assert snapshot.source == "/etc/mesh/policy.yaml"
    assert before <= snapshot.loaded_at <= time.time()
    assert snapshot.index.inbound(80).protocol is Protocol.DETECT
    assert (store.reloads_succeeded, store.reloads_failed, store.last_error) == (0, 0, None)
    assert store.file_present
    assert store.last_success_at == snapshot.loaded_at


def test_the_embedded_default_source() -> None:
    store = PolicyStore(DEFAULT_POLICY, source=EMBEDDED_DEFAULT_SOURCE)
    assert store.current.source == "embedded-default"


def test_apply_installs_the_next_generation() -> None:
    store = PolicyStore(FIRST, source="a.yaml")
    snapshot = store.apply(SECOND, source="b.yaml")
    assert store.current is snapshot
    assert (snapshot.generation, snapshot.source, snapshot.policy) == (2, "b.yaml", SECOND)
    assert snapshot.version == policy_version(SECOND) != policy_version(FIRST)
    assert snapshot.index.inbound(80).protocol is Protocol.OPAQUE
    assert store.apply(FIRST, source="a.yaml").generation == 3
    assert (store.reloads_succeeded, store.reloads_failed) == (2, 0)


def test_reject_keeps_the_current_snapshot_and_records_the_failure() -> None:
    store = PolicyStore(FIRST, source="a.yaml")
    before = store.current
    store.reject(FAILURE)
    assert store.current is before
    assert store.last_error == FAILURE
    assert (store.reloads_succeeded, store.reloads_failed) == (0, 1)
    assert store.file_present
    store.reject(FAILURE, file_present=False)
    assert store.reloads_failed == 2
    assert not store.file_present


def test_apply_after_a_failure_clears_it() -> None:
    store = PolicyStore(FIRST, source="a.yaml")
    store.reject(FAILURE, file_present=False)
    store.apply(SECOND, source="a.yaml")
    assert store.last_error is None
    assert store.file_present
    assert (store.reloads_succeeded, store.reloads_failed) == (1, 1)
    assert store.last_success_at == store.current.loaded_at


async def test_wait_for_generation_returns_at_once_when_already_newer() -> None:
    store = PolicyStore(FIRST, source="a.yaml")
    with trio.testing.assert_checkpoints():
        assert (await store.wait_for_generation(0)).generation == 1


async def test_wait_for_generation_wakes_on_apply_and_not_on_reject(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = PolicyStore(FIRST, source="a.yaml")
    woken: list[int] = []

    async def waiter() -> None:
        woken.append((await store.wait_for_generation(1)).generation)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        nursery.start_soon(waiter)
        await trio.sleep(1)
        store.reject(FAILURE)
        await trio.sleep(1)
        assert woken == []
        store.apply(SECOND, source="a.yaml")
    assert woken == [2, 2]


async def test_a_waiter_for_a_later_generation_sleeps_through_earlier_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = PolicyStore(FIRST, source="a.yaml")
    with trio.move_on_after(5) as scope:
        async with trio.open_nursery() as nursery:

            async def apply_twice() -> None:
                await trio.sleep(1)
                store.apply(SECOND, source="a.yaml")
                await trio.sleep(1)
                store.apply(FIRST, source="a.yaml")

            nursery.start_soon(apply_twice)
            snapshot = await store.wait_for_generation(2)
            assert snapshot.generation == 3
            assert trio.current_time() == 2
    assert not scope.cancelled_caught
