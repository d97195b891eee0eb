"""Changing pod a's service in its policy file, as an operator would, and waiting until its proxy applied it."""

from __future__ import annotations

from typing import Final

import trio

from ctl.lab.lab import Pod
from ctl.lab.pod_policy import PolicyDocument, write_policy

RELOAD_TIMEOUT: Final = 5.0  # seconds for a proxy to apply a policy; it polls the file twice a second


def services(policy: PolicyDocument) -> list[dict[str, object]]:
    """The document's ``outbound.services`` list, to change in place."""
    outbound = policy["outbound"]
    assert isinstance(outbound, dict)
    found = outbound.setdefault("services", [])
    assert isinstance(found, list)
    return found


def service(policy: PolicyDocument, name: str = "web") -> dict[str, object]:
    (entry,) = [entry for entry in services(policy) if entry["name"] == name]
    return entry


async def generation(pod: Pod) -> int:
    return (await trio.to_thread.run_sync(pod.admin().status)).policy_generation


async def apply_policy(pod: Pod, policy: PolicyDocument) -> tuple[float, float]:
    """Writes ``policy`` and waits until the proxy's generation moves on: (trio time of the write, trio time the
    new generation showed). Between the two, a request may meet either generation."""
    before = await generation(pod)
    written = trio.current_time()
    write_policy(pod.policy_path, policy)
    with trio.fail_after(RELOAD_TIMEOUT):
        while await generation(pod) == before:
            await trio.sleep(0.02)
    return written, trio.current_time()
