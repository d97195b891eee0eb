"""The Kubernetes example as the tests see it: each variant rendered the way ``kubectl apply -k`` would.

The renderer understands exactly the kustomize features the example uses (``resources`` files and
directories, ``patches`` with a target and an inline JSON 6902 patch) and fails on any other field, so a
kustomization that grows a feature cannot be half-understood here.
"""

from __future__ import annotations

import copy
import enum
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = REPO_ROOT / "containers"
K8S = CONTAINERS / "k8s"

Resource = dict[str, Any]

_KNOWN_FIELDS = {"apiVersion", "kind", "resources", "patches"}
_TARGET_KEYS = {"group", "version", "kind", "name"}


class Variant(enum.Enum):
    """A kustomization directory under containers/k8s, named for the interception mode it deploys."""

    REDIRECT = "base"
    TPROXY = "tproxy"

    @property
    def mode(self) -> str:
        return "redirect" if self is Variant.REDIRECT else "tproxy"


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[Resource]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _KNOWN_FIELDS
    assert not unknown, f"{directory}/kustomization.yaml uses {sorted(unknown)}, which this renderer does not know"
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources: list[Resource] = []
    for entry in kustomization["resources"]:
        path = (directory / entry).resolve()
        resources += render(path) if path.is_dir() else load_documents(path)
    for patch in kustomization.get("patches", []):
        resources = [_apply(patch, resource, directory) for resource in resources]
    return resources


def rendered(variant: Variant) -> list[Resource]:
    return render(K8S / variant.value)


def _apply(patch: dict[str, Any], resource: Resource, directory: Path) -> Resource:
    assert set(patch) == {"target", "patch"}, f"{directory}: only target + inline JSON 6902 patches are rendered"
    target = patch["target"]
    assert set(target) <= _TARGET_KEYS, f"{directory}: unsupported target selector {sorted(target)}"
    group, _, version = resource["apiVersion"].rpartition("/")
    selected = {"group": group, "version": version, "kind": resource["kind"], "name": resource["metadata"]["name"]}
    if any(selected[key] != value for key, value in target.items()):
        return resource
    ops = yaml.safe_load(patch["patch"])
    result: Resource = jsonpatch.apply_patch(copy.deepcopy(resource), ops)
    return result


def only(resources: list[Resource], kind: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(resources: list[Resource]) -> dict[str, Any]:
    spec: dict[str, Any] = only(resources, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(resources: list[Resource], name: str) -> dict[str, Any]:
    spec = pod_spec(resources)
    found: list[dict[str, Any]] = [
        c for c in (*spec.get("initContainers", []), *spec["containers"]) if c["name"] == name
    ]
    assert len(found) == 1, f"expected one container named {name}, found {len(found)}"
    return found[0]


def argv(c: dict[str, Any]) -> list[str]:
    """What the container runs: command + args (the image has no ENTRYPOINT, so command is the program)."""
    return [*c["command"], *c.get("args", [])]


def configmap_files(resources: list[Resource], volume: str) -> dict[str, str]:
    """The files a configMap volume shows: key -> content."""
    spec = pod_spec(resources)
    source = next(v for v in spec["volumes"] if v["name"] == volume)["configMap"]
    configmaps = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == source["name"]]
    assert len(configmaps) == 1, f"volume {volume} names ConfigMap {source['name']}, which is not in the manifests"
    data: dict[str, str] = configmaps[0]["data"]
    return data


def mount_path(c: dict[str, Any], volume: str) -> str:
    mounts = [m for m in c.get("volumeMounts", []) if m["name"] == volume]
    assert len(mounts) == 1, f"container {c['name']} mounts volume {volume} {len(mounts)} times"
    path: str = mounts[0]["mountPath"]
    return path


def relocate(args: list[str], mounted_at: str, local_dir: Path) -> list[str]:
    """The same arguments with paths under a volume's mountPath pointing into ``local_dir`` instead."""
    prefix = mounted_at.rstrip("/") + "/"
    return [str(local_dir / arg.removeprefix(prefix)) if arg.startswith(prefix) else arg for arg in args]
