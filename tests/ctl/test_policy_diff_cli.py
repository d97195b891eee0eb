"""``meshctl policy diff`` as operators run it: against a real ``mesh-proxy`` holding open connections, then the
candidate applied for real to check the proxy does what the diff said; and its errors (exit 1 and 2, one line)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import trio

from ctl.__main__ import main
from ctl.policy_diff import PolicyDiff
from dataplane.admin.schema import ConfigReport
from tests.ctl.admin_standin import StandIn, healthy_answers, json_answer
from tests.dataplane.mtls.app import start_app
from tests.dataplane.mtls.identities import MeshCA
from tests.dataplane.mtls.proxy import CHECKOUT, RECORD_TIMEOUT, MeshProxy, mesh_proxy
from tests.dataplane.proxy_harness import free_port
from tests.identity.pki import BACKEND

CONNECTS: float = 10.0  # seconds for three loopback connections to show up as open with their upstream


class Ports(msgspec.Struct, frozen=True):
    denied_app: int
    kept_app: int
    denied_listen: int
    kept_listen: int
    outbound_listen: int


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports(*(free_port() for _ in range(5)))


def live_policy(ports: Ports) -> str:
    # Opaque ports: the proxy connects upstream at once, without waiting for the client's first bytes.
    return textwrap.dedent(f"""\
        version: 1
        name: live
        inbound:
          ports:
            - {{port: {ports.denied_app}, protocol: opaque}}
            - {{port: {ports.kept_app}, protocol: opaque}}
        outbound:
          ports:
            - {{port: {ports.denied_app}, protocol: opaque}}
        """)


def candidate_policy(ports: Ports) -> str:
    """Denies every client of the first application's port; the rest stays, with a shorter idle timeout."""
    return textwrap.dedent(f"""\
        version: 1
        name: candidate
        timeouts: {{idle: 5m}}
        inbound:
          ports:
            - {{port: {ports.denied_app}, protocol: opaque, authorization: []}}
            - {{port: {ports.kept_app}, protocol: opaque}}
        outbound:
          ports:
            - {{port: {ports.denied_app}, protocol: opaque}}
        """)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, ports: Ports) -> Iterator[MeshProxy]:
    workdir = tmp_path_factory.mktemp("pdiff")
    identity = MeshCA.init(workdir / "ca").issue(BACKEND, workdir / "backend")
    app = "127.0.0.1:{}".format
    with mesh_proxy(
        workdir / "proxy",
        identity=identity,
        policy=live_policy(ports),
        inbound_forwards=[
            f"{app(ports.denied_listen)}={app(ports.denied_app)}",
            f"{app(ports.kept_listen)}={app(ports.kept_app)}",
        ],
        forwards=[f"{app(ports.outbound_listen)}={app(ports.denied_app)}"],
    ) as running:
        yield running


async def meshctl(*args: str) -> tuple[int, str, str]:
    done = await trio.run_process(
        [sys.executable, "-m", "ctl", *args], cwd=CHECKOUT, capture_stdout=True, capture_stderr=True, check=False
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_diff_against_a_running_proxy_predicts_the_reload(
    proxy: MeshProxy, ports: Ports, tmp_path: Path, nursery: trio.Nursery
) -> None:
    await start_app(nursery, ports.denied_app)
    await start_app(nursery, ports.kept_app)
    baseline = await proxy.last_id()
    streams = []
    for listen in (ports.denied_listen, ports.kept_listen, ports.outbound_listen):
        stream = await trio.open_tcp_stream("127.0.0.1", listen)
        await stream.send_all(b"ping")
        echoed = b""
        with trio.fail_after(CONNECTS):
            while len(echoed) < 4:  # relayed to the application and back
                echoed += await stream.receive_some(4 - len(echoed))
        assert echoed == b"ping"
        streams.append(stream)
    with trio.fail_after(CONNECTS):
        while len(rows := await proxy.open_since(baseline)) < 3:
            await trio.sleep(0.05)
    by_dst = {(row["direction"], int(row["original_dst"].rpartition(":")[2])): row["id"] for row in rows}
    denied = by_dst["inbound", ports.denied_app]
    kept = by_dst["inbound", ports.kept_app]
    outbound = by_dst["outbound", ports.denied_app]

    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(candidate_policy(ports))
    admin = proxy.admin.address.url
    status, out, err = await meshctl("--admin", admin, "policy", "diff", str(candidate))
    assert (status, err) == (3, "")
    lines = out.splitlines()
    assert lines[0].startswith("live:      'live' version ")
    assert lines[0].endswith(f"({admin}, generation 1)")
    assert lines[1].startswith("candidate: 'candidate' version ") and lines[1].endswith(f"({candidate})")
    assert "open connections: 1 denied, 0 requests limited, 0 rerouted, 0 re-identified, 2 unchanged" in lines
    row = next(line.split() for line in lines if line.split()[:1] == [str(denied)])
    assert row[1] == "inbound" and row[5] == "denied"
    assert " ".join(row[6:]) == f"no rule of port {ports.denied_app} allows a plaintext client on an opaque connection"
    assert f"  {kept}: idle timeout 1h -> 5m" in lines
    assert f"  inbound port {ports.denied_app}: authorization null (every client) -> [] (no client)" in lines
    assert "  timeouts: idle 1h -> 5m" in lines

    status, out, _ = await meshctl("policy", "diff", str(candidate), "--json", "--admin", admin)
    assert status == 3
    result = msgspec.json.decode(out, type=PolicyDiff)
    mine = {found.connection.id: found.verdict for found in result.connections if found.connection.id > baseline}
    assert mine == {denied: "denied", kept: "unchanged", outbound: "unchanged"}

    # Apply it: the proxy closes exactly the connection the diff called denied, and nothing else.
    (proxy.log.parent / "policy.yaml").write_text(candidate_policy(ports))
    with trio.fail_after(RECORD_TIMEOUT):
        while denied in {row["id"] for row in await proxy.open_since(baseline)}:
            await trio.sleep(0.05)
    report = await proxy.report()
    assert {row["id"] for row in report["open"] if row["id"] > baseline} == {kept, outbound}
    assert next(row for row in report["recent"] if row["id"] == denied)["close_reason"] == "policy_revoked"

    # Now live: the same bundle changes nothing.
    status, out, _ = await meshctl("--admin", admin, "policy", "diff", str(candidate))
    assert status == 0, out
    assert "policy changes: none" in out.splitlines()
    for stream in streams:
        await stream.aclose()


def test_invalid_file_lists_every_problem_without_asking_the_proxy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bad.yaml"
    bundle.write_text("version: 1\ntimeouts: {idle: soon}\ninbound: {ports: [{port: 0}]}\n")
    # No proxy listens there: the file is checked first.
    assert main(["policy", "diff", str(bundle), "--admin", f"127.0.0.1:{free_port()}"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == f"{bundle}: invalid policy, 2 problem(s):"
    assert captured.err == ""


def test_unreachable_proxy_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "ok.yaml"
    bundle.write_text("version: 1\n")
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["--admin", url, "policy", "diff", str(bundle)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"meshctl: error: cannot reach the proxy admin endpoint at {url}: connection refused (is mesh-proxy running?)\n"
    )


async def test_unreadable_live_policy_is_one_line_and_exit_1(
    tmp_path: Path, nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "ok.yaml"
    bundle.write_text("version: 1\n")
    config = ConfigReport(
        policy=msgspec.Raw(b'{"version": 1, "mystery": true}'),
        policy_version="abc",
        policy_generation=1,
        policy_source="x",
        loaded_at=0.0,
        last_reload_error=None,
    )
    answers = {**healthy_answers(), "/config": json_answer(config)}
    port = await nursery.start(StandIn(answers).serve)
    argv = ["--admin", f"127.0.0.1:{port}", "policy", "diff", str(bundle)]
    assert await trio.to_thread.run_sync(main, argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "answered GET /config with a policy this meshctl cannot read (1 problem(s), first: mystery:" in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["policy", "diff"], "the following arguments are required: FILE"),
        (["policy", "diff", "x.yaml", "--admin", "ftp://127.0.0.1:1"], "argument --admin: invalid admin URL"),
        (["policy", "diff", "x.yaml", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_exit_2(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["policy", "diff", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 when no open connection would be affected, 3 when some would be" in text
