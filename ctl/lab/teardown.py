"""``lab down``: remove every namespace, link, rule and process of a lab, with or without its state file.

Processes first (found by marker and by ``ip netns pids``), so none keeps a deleted namespace alive; then the
namespaces, pods before the hub. iptables rules and routes live inside the pod namespaces and the links inside
the lab namespaces, so they go with them. Idempotent: a second run finds nothing and succeeds.
"""

from __future__ import annotations

import os
import shutil

import msgspec

from ctl.lab.command import LabError
from ctl.lab.network import delete_netns, list_netns, netns_pids
from ctl.lab.processes import marked_processes, stop
from ctl.lab.state import lab_dir, state_path
from ctl.lab.topology import lab_namespaces


class Teardown(msgspec.Struct, frozen=True, kw_only=True):
    prefix: str
    stopped: list[int]
    """Pids that were still running and were stopped."""
    namespaces: list[str]
    """Namespaces that existed and were deleted."""

    def summary(self) -> str:
        if not self.stopped and not self.namespaces:
            return f"lab {self.prefix}: nothing to clean up"
        names = ", ".join(self.namespaces) or "none"
        return f"lab {self.prefix}: stopped {len(self.stopped)} process(es), deleted namespaces: {names}"


async def teardown(prefix: str, *, keep_logs: bool = False) -> Teardown:
    """Error handling: raises ``LabError`` only if a namespace survives deletion."""
    namespaces = lab_namespaces(prefix, await list_netns())
    pids = set(marked_processes(prefix))
    for name in namespaces:
        pids.update(await netns_pids(name))
    pids.discard(os.getpid())  # meshctl may itself run inside a pod (`lab exec a -- meshctl lab down`)
    stopped = await stop(sorted(pids))
    for name in namespaces:
        await delete_netns(name)
    left = lab_namespaces(prefix, await list_netns())
    if left:
        raise LabError(f"lab {prefix}: namespaces still present after deletion: {', '.join(left)}")
    if keep_logs:
        state_path(prefix).unlink(missing_ok=True)
    else:
        shutil.rmtree(lab_dir(prefix), ignore_errors=True)
    return Teardown(prefix=prefix, stopped=stopped, namespaces=namespaces)
