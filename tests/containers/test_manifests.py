"""containers/k8s: schema-valid for the Kubernetes versions we claim, and every value the pod passes to
triomesh accepted by the real parsers and consistent between mesh-init, mesh-proxy and the probes."""

from __future__ import annotations

import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from ctl.__main__ import build_parser as meshctl_parser
from ctl.client import parse_admin_url
from dataplane.net.addr import SockAddr
from dataplane.settings import ProxySettings, parse_args
from dataplane.version import VERSION
from iptables.__main__ import build_parser as mesh_init_parser
from iptables.__main__ import config_from_args
from iptables.config import FirewallConfig, Mode
from policy.load import decode_policy, format_for_path
from policy.model import Protocol
from tests.containers.manifests import (
    K8S,
    Resource,
    Variant,
    argv,
    configmap_files,
    container,
    load_documents,
    mount_path,
    pod_spec,
    relocate,
    rendered,
)
from tests.containers.project import ENTRY_POINTS, packages, scripts

# Native sidecars (restartPolicy: Always on an init container) are on by default from 1.29; the newest is the
# last schema kubernetes-validate ships.
OLDEST_SUPPORTED = "1.29"
NEWEST = kubernetes_validate.latest_version()
PROXY_UID = 1337

variants = pytest.mark.parametrize("variant", list(Variant), ids=lambda v: v.name.lower())


@variants
@pytest.mark.parametrize("version", [OLDEST_SUPPORTED, NEWEST])
def test_every_resource_validates_strictly(variant: Variant, version: str) -> None:
    resources = rendered(variant)
    assert {r["kind"] for r in resources} == {"Namespace", "ConfigMap", "Deployment", "Service"}
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{resource['kind']}/{resource['metadata']['name']} (k8s {version}): {where}: {exc.message}")


def test_base_kustomization_lists_every_manifest() -> None:
    """A manifest left out of kustomization.yaml would silently never be applied."""
    listed = set(yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for name in on_disk:
        assert load_documents(K8S / "base" / name), f"{name} holds no document"


def test_every_namespaced_resource_lives_in_the_demo_namespace() -> None:
    resources = rendered(Variant.REDIRECT)
    namespace = next(r for r in resources if r["kind"] == "Namespace")["metadata"]["name"]
    for resource in resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace, resource["metadata"]["name"]


def test_tproxy_overlay_changes_only_the_mode() -> None:
    base, tproxy = rendered(Variant.REDIRECT), rendered(Variant.TPROXY)
    swap = {"redirect": "tproxy"}
    for name in ("mesh-init", "mesh-proxy"):
        assert container(tproxy, name)["args"] == [swap.get(a, a) for a in container(base, name)["args"]]
    for resources in (base, tproxy):
        for name in ("mesh-init", "mesh-proxy"):
            container(resources, name)["args"] = []
    assert base == tproxy


@variants
def test_policy_in_the_configmap_decodes(variant: Variant) -> None:
    resources = rendered(variant)
    files = configmap_files(resources, "policy")
    for c in (container(resources, "mesh-init"), container(resources, "mesh-proxy")):
        mounted = mount_path(c, "policy")
        policy_args = [a for a in argv(c) if a.startswith(mounted + "/")]
        assert policy_args, f"{c['name']} does not read the mounted policy"
        for path in policy_args:
            key = path.removeprefix(mounted + "/")
            assert key in files, f"{c['name']} reads {path}, but the ConfigMap has only {sorted(files)}"
            policy = decode_policy(files[key].encode(), format_for_path(key), source=f"ConfigMap key {key}")
            assert policy.name == "triomesh-demo"
    # The demo app greets first: detection on its port would wait for the client in vain.
    app_port = container(resources, "demo")["ports"][0]["containerPort"]
    inbound = {p.port: p for p in policy.inbound.ports}
    assert inbound[app_port].protocol is Protocol.OPAQUE


def _proxy_settings(resources: list[Resource]) -> ProxySettings:
    command = argv(container(resources, "mesh-proxy"))
    assert command[0] == "mesh-proxy"
    return parse_args(command[1:])


def _firewall_config(resources: list[Resource], tmp_path: Path) -> FirewallConfig:
    """mesh-init's configuration from the init container's flags, its policy read from the ConfigMap."""
    init = container(resources, "mesh-init")
    command = argv(init)
    assert command[0] == "mesh-init"
    for key, text in configmap_files(resources, "policy").items():
        (tmp_path / key).write_text(text)
    args = mesh_init_parser().parse_args(relocate(command[1:], mount_path(init, "policy"), tmp_path))
    assert not args.dry_run and not args.cleanup
    return config_from_args(args)


@variants
def test_mesh_init_and_mesh_proxy_flags_parse_and_agree(variant: Variant, tmp_path: Path) -> None:
    resources = rendered(variant)
    proxy = _proxy_settings(resources)
    firewall = _firewall_config(resources, tmp_path)
    sidecar = container(resources, "mesh-proxy")["securityContext"]

    assert firewall.mode is Mode(variant.mode)
    assert proxy.inbound_mode == variant.mode
    assert proxy.policy_path == "/etc/triomesh/policy.yaml"
    # What mesh-init exempts is what the proxy is: its UID and its socket mark.
    assert firewall.proxy_uid == sidecar["runAsUser"] == PROXY_UID
    assert firewall.proxy_mark == proxy.mark != 0
    # Where mesh-init sends traffic is where the proxy listens.
    assert (firewall.outbound_port, firewall.inbound_port) == (proxy.outbound_port, proxy.inbound_port)
    # The admin port stays direct inbound, and the policy's exclusions made it into the rules.
    assert any(r.first <= proxy.admin.port <= r.last for r in firewall.exclude_inbound_ports)
    assert "169.254.169.254/32" in firewall.exclude_outbound_cidrs


@variants
def test_probes_are_exec_against_the_loopback_admin_endpoint(variant: Variant) -> None:
    resources = rendered(variant)
    admin = _proxy_settings(resources).admin
    assert admin == SockAddr("127.0.0.1", 15000)
    sidecar = container(resources, "mesh-proxy")
    probes = {kind: sidecar[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    for kind, probe in probes.items():
        assert set(probe) & {"httpGet", "tcpSocket", "grpc"} == set(), f"{kind}: kubelet cannot reach 127.0.0.1"
    # Startup and readiness ask /ready (meshctl status exits 0 even when the proxy is not ready).
    ready_check = probes["startupProbe"]["exec"]["command"]
    assert probes["readinessProbe"]["exec"]["command"] == ready_check
    assert ready_check[:2] == ["python", "-c"]
    script = ready_check[2]
    compile(script, "readiness probe", "exec")
    assert f'HTTPConnection("{admin.ip}", {admin.port},' in script
    assert '"/ready"' in script
    # Liveness: meshctl status, which fails only when the endpoint does not answer (so never during a drain).
    liveness = probes["livenessProbe"]["exec"]["command"]
    assert liveness[0] == "meshctl"
    args = meshctl_parser().parse_args(liveness[1:])
    assert args.command == "status"
    assert args.admin == parse_admin_url(f"{admin.ip}:{admin.port}")
    # The app starts only after the proxy's startup probe passes, and that must fit in the pod's patience.
    startup = probes["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 10


@variants
def test_pod_runs_init_then_native_sidecar_then_app(variant: Variant) -> None:
    spec = pod_spec(rendered(variant))
    assert [c["name"] for c in spec["initContainers"]] == ["mesh-init", "mesh-proxy"]
    assert "restartPolicy" not in spec["initContainers"][0]  # runs once, to completion
    assert spec["initContainers"][1]["restartPolicy"] == "Always"  # native sidecar
    assert [c["name"] for c in spec["containers"]] == ["demo"]


@variants
def test_security_contexts_grant_only_what_each_part_needs(variant: Variant) -> None:
    resources = rendered(variant)
    init = container(resources, "mesh-init")["securityContext"]
    proxy = container(resources, "mesh-proxy")["securityContext"]
    app = container(resources, "demo")["securityContext"]
    for ctx in (init, proxy, app):
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert "privileged" not in ctx
    assert (init["runAsUser"], init["runAsNonRoot"]) == (0, False)
    assert sorted(init["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    assert (proxy["runAsUser"], proxy["runAsGroup"], proxy["runAsNonRoot"]) == (PROXY_UID, PROXY_UID, True)
    assert sorted(proxy["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    # The app must not share the proxy's UID: mesh-init never intercepts UID 1337's traffic.
    assert app["runAsUser"] != PROXY_UID and app["runAsNonRoot"] is True
    assert "add" not in app["capabilities"]
    assert pod_spec(resources)["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"


@variants
def test_every_container_has_requests_and_limits(variant: Variant) -> None:
    spec = pod_spec(rendered(variant))
    for c in (*spec["initContainers"], *spec["containers"]):
        for bound in ("requests", "limits"):
            assert set(c["resources"][bound]) == {"cpu", "memory"}, f"{c['name']} {bound}"


@variants
def test_drain_fits_in_the_grace_period(variant: Variant) -> None:
    resources = rendered(variant)
    assert _proxy_settings(resources).drain_timeout < pod_spec(resources)["terminationGracePeriodSeconds"]


@variants
def test_every_command_is_a_console_script_of_this_image(variant: Variant) -> None:
    """The image version is the project's, and what each container runs is something the image installs."""
    assert set(scripts()) >= ENTRY_POINTS
    spec = pod_spec(rendered(variant))
    for c in (*spec["initContainers"], *spec["containers"]):
        assert c["image"] == f"triomesh:{VERSION}", c["name"]
        program = argv(c)[0]
        assert program in ENTRY_POINTS or program == "python", f"{c['name']} runs {shlex.join(argv(c))}"
        if program == "python" and argv(c)[1] == "-m":
            module = argv(c)[2]
            assert module.split(".")[0] in packages(), module
