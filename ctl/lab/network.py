"""Building and removing the lab's namespaces and links with iproute2.

Everything is created inside lab namespaces: the bridge lives in the hub namespace and each veth pair is
created there with its peer moved straight into the pod, so the host's own namespace never holds a lab link.
Deleting a namespace destroys the links in it (and a veth's peer with it), so teardown is namespace deletion.
"""

from __future__ import annotations

from ctl.lab.command import LabError, run
from ctl.lab.topology import BRIDGE, IPV4_NET, IPV6_NET, POD_IFACE, PodPlan, Topology


async def list_netns() -> list[str]:
    """Names from ``ip netns list`` (each line is "NAME" or "NAME (id: N)")."""
    done = await run(["ip", "netns", "list"])
    return [line.split()[0] for line in done.stdout.decode().splitlines() if line.strip()]


async def netns_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name``; empty when the namespace is gone."""
    done = await run(["ip", "netns", "pids", name], check=False)
    return [int(word) for word in done.stdout.split() if word.isdigit()]


async def build_hub(topology: Topology) -> None:
    hub = topology.hub_netns
    await run(["ip", "netns", "add", hub])
    await run(["ip", "-n", hub, "link", "set", "lo", "up"])
    await run(["ip", "-n", hub, "link", "add", BRIDGE, "type", "bridge"])
    await run(["ip", "-n", hub, "link", "set", BRIDGE, "up"])


async def build_pod(topology: Topology, pod: PodPlan) -> None:
    hub, ns = topology.hub_netns, pod.netns
    await run(["ip", "netns", "add", ns])
    await run(["ip", "-n", hub, "link", "add", pod.hub_port, "type", "veth", "peer", "name", POD_IFACE, "netns", ns])
    await run(["ip", "-n", hub, "link", "set", pod.hub_port, "master", BRIDGE, "up"])
    await run(["ip", "-n", ns, "link", "set", "lo", "up"])
    await run(["ip", "-n", ns, "addr", "add", f"{pod.ipv4}/{IPV4_NET.prefixlen}", "dev", POD_IFACE])
    if pod.ipv6 is not None:
        # nodad: the address is usable at once instead of after duplicate address detection (~1-2 s).
        await run(
            [
                "ip",
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                f"{pod.ipv6}/{IPV6_NET.prefixlen}",
                "dev",
                POD_IFACE,
                "nodad",
            ]
        )
    await run(["ip", "-n", ns, "link", "set", POD_IFACE, "up"])


async def add_routes(netns: str, networks: list[str]) -> None:
    """Route ``networks`` out of the pod's eth0 (on-link): a connect() to an address there then leaves the socket
    layer and meets the pod's outbound REDIRECT rule instead of failing with "network unreachable"."""
    for network in networks:
        await run(["ip", "-n", netns, "route", "add", network, "dev", POD_IFACE])


async def delete_netns(name: str) -> None:
    """Idempotent: a namespace that is already gone is fine."""
    done = await run(["ip", "netns", "del", name], check=False)
    if done.returncode != 0 and name in await list_netns():
        raise LabError(f"cannot delete network namespace {name}: {done.stderr.decode().strip()}")
