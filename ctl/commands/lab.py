"""``meshctl lab up|status|rotate|down|exec|demo|fail|delay|kill-app|start-app``: the network-namespace lab (needs
root)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from ctl.commands import Subparsers
from ctl.commands.argtypes import checked, number_in
from ctl.errors import CtlError, UsageError

if TYPE_CHECKING:
    from ctl.lab.lab import Lab
from ctl.lab.app_faults import MAX_DELAY_MS, parse_fail_mode
from ctl.lab.service import SERVICE_NAME, SERVICE_PODS, SERVICE_PORT, SERVICE_VIP, SERVICE_VIP6, parse_weights
from ctl.lab.topology import DEFAULT_PREFIX, HTTP_PORT, MAX_PODS, Mode, pod_netns, validate_prefix


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="build, inspect and remove a mesh of network-namespace pods (root)",
        description="A small mesh on this machine: pods are network namespaces on a bridge, each with"
        " mesh-init rules, a mesh-proxy (UID 1337) with its own SPIFFE identity, and a demo app on port 8080;"
        " strict mTLS between all pods unless --no-mtls. Needs root.",
    )
    actions = parser.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="build a lab and wait until every proxy is ready")
    _prefix(up)
    up.add_argument(
        "--pods",
        type=number_in(int, 1, MAX_PODS, what="a whole number"),
        default=None,
        metavar="N",
        help=f"number of pods (default 3; {SERVICE_PODS} with --service)",
    )
    _shape(up)
    up.add_argument(
        "--service",
        action="store_true",
        help=f"make pod a the client of a service {SERVICE_NAME} at {SERVICE_VIP}:{SERVICE_PORT} (and"
        f" [{SERVICE_VIP6}]:{SERVICE_PORT}) over the other pods' demo apps (port {HTTP_PORT})",
    )
    up.add_argument(
        "--weights",
        type=checked(parse_weights),
        default=None,
        metavar="W,W,...",
        help="with --service: the endpoints' weights, one per pod b, c, ... (default all 1)",
    )
    up.set_defaults(run=run_up)

    status = actions.add_parser("status", help="list the pods with their proxies and apps")
    _prefix(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(run=run_status)

    rotate = actions.add_parser(
        "rotate",
        help="re-issue pods' SVIDs and wait until every proxy serves the new one",
        description="Issue a new SVID (new key, new serial) into each pod's identity directory, as"
        " `meshctl ca issue` would, and wait until each proxy's /status reports it (new handshakes use it,"
        " open connections keep theirs).",
    )
    _prefix(rotate)
    rotate.add_argument("pods", nargs="*", metavar="POD", help="the pods to rotate (default: every pod)")
    rotate.set_defaults(run=run_rotate)

    down = actions.add_parser("down", help="remove everything a lab created (also after a crash)")
    _prefix(down)
    down.set_defaults(run=run_down)

    run_in = actions.add_parser(
        "exec",
        help="run a command inside a pod's namespace (as root: its traffic is intercepted)",
        description="Run CMD inside the pod's network namespace, e.g. `meshctl lab exec a -- ss -tn`.",
    )
    _prefix(run_in)
    run_in.add_argument("pod", metavar="POD", help="pod name (a, b, ...)")
    run_in.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run")
    run_in.set_defaults(run=run_exec)

    fail = actions.add_parser(
        "fail",
        help="make a pod's demo app fail every HTTP request: an error status, a reset or a hang (off: normal)",
        description="Set the fault of the pod's demo app (its HTTP port): MODE is off, reset (RST once the"
        " request head is read), hang (never answer) or an error status 400-599 such as 503.",
    )
    _prefix(fail)
    fail.add_argument("pod", metavar="POD", help="pod name (a, b, ...)")
    fail.add_argument("mode", type=checked(_fail_mode), metavar="MODE", help="off, reset, hang or a status (503)")
    fail.set_defaults(run=run_fail)

    delay = actions.add_parser("delay", help="delay every HTTP answer of a pod's demo app by MS milliseconds")
    _prefix(delay)
    delay.add_argument("pod", metavar="POD", help="pod name (a, b, ...)")
    delay.add_argument("ms", type=number_in(int, 0, MAX_DELAY_MS, what="whole milliseconds"), metavar="MS")
    delay.set_defaults(run=run_delay)

    kill_app = actions.add_parser("kill-app", help="SIGKILL a pod's demo app, as a crash would")
    _prefix(kill_app)
    kill_app.add_argument("pod", metavar="POD", help="pod name (a, b, ...)")
    kill_app.set_defaults(run=run_kill_app)

    start_app = actions.add_parser("start-app", help="start a pod's demo app again and wait until it listens")
    _prefix(start_app)
    start_app.add_argument("pod", metavar="POD", help="pod name (a, b, ...)")
    start_app.set_defaults(run=run_start_app)

    demo = actions.add_parser("demo", help="up, traffic a->b->c->a, tables and metrics, down (make demo)")
    _prefix(demo)
    _shape(demo)
    demo.set_defaults(run=run_demo)


def _prefix(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefix",
        type=checked(validate_prefix),
        default=DEFAULT_PREFIX,
        help=f"name prefix of the lab's namespaces (default {DEFAULT_PREFIX})",
    )


def _shape(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=[mode.value for mode in Mode],
        default=Mode.REDIRECT.value,
        help="how inbound traffic reaches the proxy (default redirect)",
    )
    parser.add_argument(
        "--ipv6",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give pods IPv6 addresses too (default on)",
    )
    parser.add_argument(
        "--mtls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a lab CA, an SVID per pod and strict mTLS between pods (default on; --no-mtls: plaintext)",
    )


def _fail_mode(text: str) -> str:
    parse_fail_mode(text)
    return text


def _need_root() -> None:
    if os.geteuid() != 0:
        raise CtlError("meshctl lab needs root (it creates network namespaces and iptables rules)")


def run_up(args: argparse.Namespace) -> int:
    import trio

    from ctl.lab.lab import Lab
    from ctl.lab.status import lab_status, render_lab_status

    if args.weights is not None and not args.service:
        raise UsageError("lab up: --weights needs --service")
    pods = int(args.pods) if args.pods is not None else SERVICE_PODS if args.service else 3
    try:
        lab = Lab(
            str(args.prefix),
            pods,
            Mode(args.mode),
            bool(args.ipv6),
            mtls=bool(args.mtls),
            service=bool(args.service),
            weights=args.weights,
        )
    except ValueError as exc:
        raise UsageError(f"lab up: {exc}") from None
    _need_root()

    async def up() -> str:
        await lab.up()
        return render_lab_status(await lab_status(lab.prefix))

    sys.stdout.write(trio.run(up))
    return 0


def run_status(args: argparse.Namespace) -> int:
    import msgspec
    import trio

    from ctl.lab.status import lab_status, render_lab_status

    _need_root()
    status = trio.run(lab_status, str(args.prefix))
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(status), indent=2).decode())
    else:
        sys.stdout.write(render_lab_status(status))
    return 0 if status.healthy else 1


def run_rotate(args: argparse.Namespace) -> int:
    import trio

    from ctl.lab.rotate import rotate

    _need_root()
    for rotation in trio.run(rotate, str(args.prefix), list(args.pods)):
        print(rotation.summary())
    return 0


def run_down(args: argparse.Namespace) -> int:
    import trio

    from ctl.lab.teardown import teardown

    _need_root()
    print(trio.run(teardown, str(args.prefix)).summary())
    return 0


def run_exec(args: argparse.Namespace) -> int:
    command: list[str] = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("lab exec: give the command after the pod, e.g. `meshctl lab exec a -- ss -tn`")
    netns = _pod_netns(args)
    try:
        done = subprocess.run(["ip", "netns", "exec", netns, *command], check=False)
    except FileNotFoundError:
        raise CtlError("ip not found on PATH (Debian package iproute2)") from None
    return done.returncode if done.returncode >= 0 else 128 - done.returncode


def run_fail(args: argparse.Namespace) -> int:
    import trio

    from ctl.lab.app_control import set_fail

    print(trio.run(set_fail, _pod_netns(args), str(args.mode)))
    return 0


def run_delay(args: argparse.Namespace) -> int:
    import trio

    from ctl.lab.app_control import set_delay

    print(trio.run(set_delay, _pod_netns(args), int(args.ms)))
    return 0


def run_kill_app(args: argparse.Namespace) -> int:
    import trio

    lab = _lab_from_state(args)
    pid = trio.run(lab.kill_app, str(args.pod))
    print(f"pod {args.pod}: demo app (pid {pid}) killed")
    return 0


def run_start_app(args: argparse.Namespace) -> int:
    import trio

    lab = _lab_from_state(args)
    pid = trio.run(lab.start_app, str(args.pod))
    print(f"pod {args.pod}: demo app started (pid {pid}), listening")
    return 0


def _pod_netns(args: argparse.Namespace) -> str:
    """The pod's namespace, which must exist; UsageError for a bad pod name."""
    from ctl.netns import netns_path

    try:
        netns = pod_netns(str(args.prefix), str(args.pod))
    except ValueError as exc:
        raise UsageError(f"lab {args.lab_command} POD: {exc}") from None
    _need_root()
    if not netns_path(netns).exists():
        raise CtlError(f"pod {args.pod} of lab {args.prefix} does not exist (no namespace {netns}); `lab up` first")
    return netns


def _lab_from_state(args: argparse.Namespace) -> Lab:
    from ctl.lab.lab import Lab
    from ctl.lab.state import load_state

    _pod_netns(args)
    state = load_state(str(args.prefix))
    if state is None:
        raise CtlError(f"lab {args.prefix} has no state file; `meshctl lab up` first")
    return Lab.from_state(state)


def run_demo(args: argparse.Namespace) -> int:
    from functools import partial

    import trio

    from ctl.lab.demo import run_demo as demo

    _need_root()
    worked = trio.run(
        partial(
            demo, sys.stdout, prefix=str(args.prefix), mode=Mode(args.mode), ipv6=bool(args.ipv6), mtls=bool(args.mtls)
        )
    )
    return 0 if worked else 1
