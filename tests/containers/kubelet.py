"""Just enough of a kubelet to run the example pod's containers as their manifest says, without a cluster.

A "pod" is a network namespace (prefix ``tmctr-``) joined to a client namespace by a veth. Each container
runs there from the installed triomesh (this virtualenv's bin/ first on PATH, as in the image) with the
securityContext turned into setpriv flags: its UID/GID, a bounding set of only the added capabilities, and
no_new_privs for ``allowPrivilegeEscalation: false``. A non-root container with added capabilities gets them
as ambient capabilities here; in the image, mesh-proxy's interpreter carries them as file capabilities
instead (Kubernetes grants no ambient set). The policy ConfigMap is written to a directory the container's
user can read, and paths under its mountPath are pointed there. ``$(VAR)`` in commands is expanded from the
container's env, as the kubelet does.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.containers.manifests import Resource, argv, configmap_files, mount_path, relocate

POD_NAME = "demo-test"
POD_IP = "198.18.9.1"
CLIENT_IP = "198.18.9.2"
_SETPRIV = shutil.which("setpriv") or "setpriv"


@dataclass(frozen=True)
class PodNetwork:
    pod: str
    client: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def pod_network() -> Iterator[PodNetwork]:
    """Two fresh namespaces joined by a veth: the pod (POD_IP) and a client outside it (CLIENT_IP)."""
    tag = secrets.token_hex(3)
    net = PodNetwork(pod=f"tmctr-{tag}-pod", client=f"tmctr-{tag}-cli")
    made: list[str] = []
    try:
        for ns in (net.pod, net.client):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        # The pair is created inside the pod namespace, so the host never holds one of our links.
        _ip("-n", net.pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", net.client)
        for ns, address in ((net.pod, POD_IP), (net.client, CLIENT_IP)):
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        yield net
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)


@contextmanager
def configmap_volume(resources: list[Resource], volume: str) -> Iterator[Path]:
    """The ConfigMap's files in a directory every container user can read (mode 0444, like defaultMode)."""
    directory = Path(tempfile.mkdtemp(prefix="tmctr-"))
    try:
        directory.chmod(0o755)
        for key, text in configmap_files(resources, volume).items():
            (directory / key).write_text(text)
            (directory / key).chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        yield directory
    finally:
        shutil.rmtree(directory)


class Pod:
    def __init__(self, network: PodNetwork, resources: list[Resource], policy_dir: Path) -> None:
        self.network = network
        self.resources = resources
        self.policy_dir = policy_dir

    def command(self, container: dict[str, Any], program: list[str] | None = None) -> list[str]:
        """``ip netns exec POD setpriv ... -- PROGRAM``; PROGRAM defaults to the container's own command."""
        run = argv(container) if program is None else program
        if any(m["name"] == "policy" for m in container.get("volumeMounts", [])):
            run = relocate(run, mount_path(container, "policy"), self.policy_dir)
        env = _container_env(container)
        run = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg) for arg in run]
        return ["ip", "netns", "exec", self.network.pod, *_setpriv(container["securityContext"]), "--", *run]

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {**os.environ, **_container_env(container), "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            found[var["name"]] = var["value"]
        elif var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}:
            found[var["name"]] = POD_NAME
        else:
            raise AssertionError(f"env {var['name']}: this stand-in kubelet only knows metadata.name")
    return found


def _setpriv(ctx: dict[str, Any]) -> list[str]:
    uid, gid = ctx["runAsUser"], ctx.get("runAsGroup", ctx["runAsUser"])
    assert ctx["capabilities"]["drop"] == ["ALL"]
    caps = ",".join(f"+{cap.lower()}" for cap in ctx["capabilities"].get("add", []))
    flags = [_SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", f"--bounding-set=-all{caps and ','}{caps}"]
    if uid != 0 and caps:
        flags += [f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}"]
    if ctx["allowPrivilegeEscalation"] is False:
        flags.append("--no-new-privs")
    return flags
