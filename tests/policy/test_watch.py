"""watch_policy on real files under every update pattern, in virtual time (autojump_clock).

Each test asserts the generation, last_error and the success/failure counts exactly: one failure per bad
file state, however many polls see it.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from policy import watch as watch_module
from policy.load import Problem, load_policy_file, policy_version
from policy.store import PolicyStore
from policy.watch import watch_policy

ONE = b"name: one\n"
TWO = b"name: two\n"
SIX = b"name: six\n"  # same size as TWO: an in-place rewrite may keep size and mtime
BAD = b"name: bad\ninbound: {ports: [{port: 0}]}\n"
BAD_PROBLEM = Problem("inbound.ports[0].port", "expected an integer from 1 to 65535, got 0")
LONG = b"name: long\ninbound:\n  ports:\n" + b"".join(b"    - port: %d\n" % port for port in range(8000, 8100))

# The longest a valid change may take to apply: poll interval + settle, with the defaults, plus one poll.
APPLY_WITHIN = 0.6


def replace_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def rewrite_in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as file:  # same inode, like `>` or an editor saving in place
        file.truncate(0)
        file.write(data)


class Watched:
    def __init__(self, path: Path, store: PolicyStore) -> None:
        self.path = path
        self.store = store

    def file_present(self) -> bool:
        return self.store.file_present

    def counts(self) -> tuple[int, int, int]:
        """(generation, reloads succeeded, reloads failed)"""
        return (self.store.current.generation, self.store.reloads_succeeded, self.store.reloads_failed)

    async def applied(self, generation: int) -> float:
        """Wait (virtual time) for ``generation``; return how long it took."""
        start = trio.current_time()
        with trio.fail_after(5):
            await self.store.wait_for_generation(generation - 1)
        return trio.current_time() - start


@pytest.fixture
async def watched(tmp_path: Path, nursery: trio.Nursery) -> Watched:
    """A watched policy.yaml holding ONE. Tests using it must take autojump_clock themselves: pytest-trio
    installs a clock only from the test function's own arguments."""
    path = tmp_path / "policy.yaml"
    path.write_bytes(ONE)
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock), "take autojump_clock in the test's own arguments"
    assert clock.autojump_threshold == 0, "take autojump_clock in the test's own arguments"
    return await start_watching(path, nursery)


async def start_watching(path: Path, nursery: trio.Nursery) -> Watched:
    store = PolicyStore(load_policy_file(path), source=str(path))
    await nursery.start(partial(watch_policy, path, store))
    await trio.sleep(1)  # the first poll re-reads the file the store was built from
    return Watched(path, store)


async def test_an_unchanged_file_is_left_alone(watched: Watched, autojump_clock: trio.testing.MockClock) -> None:
    await trio.sleep(10)
    assert watched.counts() == (1, 0, 0)
    assert watched.store.last_error is None


async def test_rename_into_place_applies_within_a_second(
    watched: Watched, autojump_clock: trio.testing.MockClock
) -> None:
    replace_atomically(watched.path, TWO)
    assert await watched.applied(2) <= APPLY_WITHIN
    assert watched.store.current.policy.name == "two"
    assert watched.store.current.source == str(watched.path)
    assert watched.counts() == (2, 1, 0)
    assert watched.store.last_error is None


async def test_kubernetes_configmap_symlink_swap(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The kubelet's layout: policy.yaml -> ..data/policy.yaml, ..data -> ..<timestamp>/ holding the files.
    volume = tmp_path / "config"
    volume.mkdir()

    def publish(timestamp: str, data: bytes) -> None:
        version_dir = volume / f"..{timestamp}"
        version_dir.mkdir()
        (version_dir / "policy.yaml").write_bytes(data)
        old = os.readlink(volume / "..data") if (volume / "..data").is_symlink() else None
        os.symlink(version_dir.name, volume / "..data_tmp")
        os.replace(volume / "..data_tmp", volume / "..data")  # the atomic swap
        if old is not None:
            for leftover in (volume / old).iterdir():
                leftover.unlink()
            (volume / old).rmdir()

    publish("2026_11_25_10_00_00.000000001", ONE)
    (volume / "policy.yaml").symlink_to("..data/policy.yaml")
    watched = await start_watching(volume / "policy.yaml", nursery)

    publish("2026_11_25_10_05_00.000000002", TWO)
    assert await watched.applied(2) <= APPLY_WITHIN
    assert watched.store.current.policy.name == "two"
    assert watched.counts() == (2, 1, 0)

    publish("2026_11_25_10_10_00.000000003", BAD)
    await trio.sleep(5)
    assert watched.counts() == (2, 1, 1)
    assert watched.store.last_error is not None
    assert watched.store.last_error.problems == (BAD_PROBLEM,)

    publish("2026_11_25_10_15_00.000000004", SIX)
    await watched.applied(3)
    assert watched.store.current.policy.name == "six"
    assert watched.counts() == (3, 2, 1)
    assert watched.store.last_error is None


async def test_in_place_rewrites_apply_even_at_the_same_size(
    watched: Watched, autojump_clock: trio.testing.MockClock
) -> None:
    rewrite_in_place(watched.path, TWO)
    assert await watched.applied(2) <= APPLY_WITHIN
    # Same inode and size, and likely the same mtime tick: only the content tells the change apart.
    rewrite_in_place(watched.path, SIX)
    assert await watched.applied(3) <= APPLY_WITHIN
    assert watched.store.current.policy.name == "six"
    assert watched.counts() == (3, 2, 0)


async def test_deletion_is_rejected_once_and_reappearance_applies(
    watched: Watched, autojump_clock: trio.testing.MockClock
) -> None:
    version = watched.store.current.version
    watched.path.unlink()
    await trio.sleep(10)
    assert watched.counts() == (1, 0, 1)
    assert not watched.file_present()
    error = watched.store.last_error
    assert error is not None
    assert error.message == f"file not found, keeping policy {version}"
    assert (error.source, error.problems) == (str(watched.path), ())
    assert watched.store.current.policy.name == "one"

    watched.path.write_bytes(ONE)  # the same policy comes back: applied again, so the recovery shows
    assert await watched.applied(2) <= APPLY_WITHIN
    assert watched.counts() == (2, 1, 1)
    assert watched.file_present()
    assert watched.store.last_error is None
    assert watched.store.current.version == version


async def test_a_torn_write_is_rejected_once_and_the_completed_file_applied(
    watched: Watched, autojump_clock: trio.testing.MockClock
) -> None:
    # Cut inside a list item: "- po" is valid YAML (the text "po") but not a port entry. A cut at a line end
    # would be a valid, shorter policy: that is what `settle` guards against, and no parser can.
    cut = LONG.index(b"- port: 8050") + len(b"- po")
    rewrite_in_place(watched.path, LONG[:cut])
    await trio.sleep(10)
    assert watched.counts() == (1, 0, 1)
    assert watched.store.last_error is not None
    assert watched.store.current.policy.name == "one"

    with open(watched.path, "ab") as file:
        file.write(LONG[cut:])
    await watched.applied(2)
    assert watched.store.current.policy.name == "long"
    assert len(watched.store.current.policy.inbound.ports) == 100
    assert watched.counts() == (2, 1, 1)
    assert watched.store.last_error is None


async def test_a_file_still_being_written_is_not_read_until_it_settles(
    watched: Watched, autojump_clock: trio.testing.MockClock
) -> None:
    # A slow writer appends a chunk every 0.1 s for 3 s: the file is never still for `settle` until done.
    chunks = [LONG[i : i + 40] for i in range(0, len(LONG), 40)]
    watched.path.write_bytes(b"")
    for chunk in chunks:
        with open(watched.path, "ab") as file:
            file.write(chunk)
        await trio.sleep(0.1)
    await watched.applied(2)
    assert watched.store.current.policy.name == "long"
    assert watched.counts() == (2, 1, 0)


async def test_an_invalid_file_is_rejected_once_then_a_valid_one_applies(
    watched: Watched, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.INFO, logger="policy.watch")
    version = watched.store.current.version
    replace_atomically(watched.path, BAD)
    await trio.sleep(10)
    assert watched.counts() == (1, 0, 1)
    error = watched.store.last_error
    assert error is not None
    assert error.problems == (BAD_PROBLEM,)
    expected = f"invalid policy, keeping policy {version}: {BAD_PROBLEM.path}: {BAD_PROBLEM.message}"
    assert error.message == expected
    assert watched.store.current.policy.name == "one"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"policy reload from {watched.path} rejected: {expected}")
    ]

    caplog.clear()
    replace_atomically(watched.path, TWO)
    await watched.applied(2)
    assert watched.counts() == (2, 1, 1)
    assert watched.store.last_error is None
    new_version = policy_version(watched.store.current.policy)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.INFO,
            f"policy reloaded from {watched.path}: version {version} -> {new_version} (generation 2)",
        )
    ]


async def test_each_different_bad_state_counts_once(watched: Watched, autojump_clock: trio.testing.MockClock) -> None:
    replace_atomically(watched.path, BAD)
    await trio.sleep(3)
    replace_atomically(watched.path, b"inbound: {exclude_ports: [0]}\n")
    await trio.sleep(3)
    watched.path.unlink()
    await trio.sleep(3)
    assert watched.counts() == (1, 0, 3)


async def test_unchanged_content_rewritten_makes_no_new_generation(
    watched: Watched, autojump_clock: trio.testing.MockClock
) -> None:
    replace_atomically(watched.path, ONE)
    await trio.sleep(3)
    rewrite_in_place(watched.path, ONE)
    await trio.sleep(3)
    # Different bytes, same policy: a comment changes nothing either.
    replace_atomically(watched.path, b"# reviewed\n" + ONE)
    await trio.sleep(3)
    assert watched.counts() == (1, 0, 0)


async def test_a_directory_in_place_of_the_file_is_rejected_once(
    watched: Watched, autojump_clock: trio.testing.MockClock
) -> None:
    version = watched.store.current.version
    watched.path.unlink()
    watched.path.mkdir()
    await trio.sleep(5)
    assert watched.counts() == (1, 0, 1)
    assert watched.file_present()
    assert watched.store.last_error is not None
    assert watched.store.last_error.message == f"is a directory, not a policy file, keeping policy {version}"
    watched.path.rmdir()
    watched.path.write_bytes(TWO)
    await watched.applied(2)
    assert watched.counts() == (2, 1, 1)


async def test_a_change_between_the_callers_load_and_the_watch_is_not_lost(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "policy.json"
    path.write_bytes(b'{"name": "one"}')
    store = PolicyStore(load_policy_file(path), source=str(path))
    path.write_bytes(b'{"name": "two"}')  # lands before the watch starts
    await nursery.start(partial(watch_policy, path, store))
    with trio.fail_after(1):
        await store.wait_for_generation(1)
    assert store.current.policy.name == "two"


async def test_bad_intervals_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(ONE)
    store = PolicyStore(load_policy_file(path), source=str(path))
    with pytest.raises(ValueError, match="poll_interval must be positive"):
        await watch_policy(path, store, poll_interval=0)
    with pytest.raises(ValueError, match="settle must not be negative"):
        await watch_policy(path, store, settle=-1)


async def test_a_same_size_rewrite_within_one_timestamp_tick_is_still_seen(
    watched: Watched, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    # This kernel stamps files with fine-grained times; older kernels and many filesystems (ext3, FAT, NFS)
    # stamp them coarsely, so two quick same-size writes can leave an identical signature. Simulate that by
    # truncating the signature's times to whole seconds (the one fault injected in these tests).
    real_signature = watch_module._signature

    def coarse_signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
        dev, ino, size, mtime_ns, ctime_ns = real_signature(st)
        return (dev, ino, size, mtime_ns // 10**9 * 10**9, ctime_ns // 10**9 * 10**9)

    monkeypatch.setattr(watch_module, "_signature", coarse_signature)
    rewrite_in_place(watched.path, TWO)
    await watched.applied(2)
    rewrite_in_place(watched.path, SIX)  # same size, same (coarse) times: only the bytes differ
    assert await watched.applied(3) <= APPLY_WITHIN
    assert watched.store.current.policy.name == "six"
    assert watched.counts() == (3, 2, 0)
