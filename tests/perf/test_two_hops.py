"""The two hops of the mTLS scenarios, for real: each proxy's pair carries a request as mTLS and both hops prove
it; a pair that talks plaintext between its hops is refused before anything is measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from perf import peers
from perf.mesh_identities import provision
from perf.peers import Layer
from perf.processes import PROXY_CORE, BenchError, Services
from perf.proxies import REPO, envoy_argv, free_addr, start_upstream, triomesh_argv, write_config
from perf.scenarios import PEER_BY_NAME
from perf.two_hops import Hops, prove_mtls, start_two_hops
from tests.perf.conftest import need

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("layer", [Layer.L7, Layer.L4])
@pytest.mark.parametrize("proxy", ["triomesh", "envoy"])
async def test_two_hops_speak_mtls_and_prove_it(tmp_path: Path, proxy: str, layer: Layer) -> None:
    need("envoy"), need("nginx"), need("taskset")
    identities = await provision(tmp_path / "identities")
    async with Services(tmp_path) as services:
        upstream, _, _ = await start_upstream(services, tmp_path)
        peer = PEER_BY_NAME[proxy]
        hops = await start_two_hops(services, peer, layer, upstream, tmp_path, identities)
        await prove_mtls(peer, hops, identities, probe=True)
        assert hops.hop1.running() and hops.hop2.running()


@pytest.mark.parametrize("proxy", ["triomesh", "envoy"])
async def test_plaintext_between_the_hops_is_refused(tmp_path: Path, proxy: str) -> None:
    """The same chain without TLS between the hops (what a silent fallback would look like) fails the proof."""
    need("envoy"), need("nginx"), need("taskset")
    identities = await provision(tmp_path / "identities")
    async with Services(tmp_path) as services:
        upstream, _, _ = await start_upstream(services, tmp_path)
        listen1, listen2, admin1, admin2 = free_addr(), free_addr(), free_addr(), free_addr()
        if proxy == "triomesh":
            argv2 = triomesh_argv(["--inbound-forward", f"{listen2}={upstream}"], admin2)
            argv1 = triomesh_argv(["--forward", f"{listen1}={listen2}"], admin1)
        else:
            envoy = need("envoy")
            argv2 = envoy_argv(
                envoy, write_config(tmp_path / "hop2.yaml", peers.envoy(listen2, upstream, admin2, Layer.L7))
            )
            argv1 = envoy_argv(
                envoy, write_config(tmp_path / "hop1.yaml", peers.envoy(listen1, listen2, admin1, Layer.L7))
            )
        hop2 = await services.start("hop2", argv2, core=PROXY_CORE, ready=listen2, cwd=REPO)
        hop1 = await services.start("hop1", argv1, core=PROXY_CORE, ready=listen1, cwd=REPO)
        hops = Hops(listen1, hop1, hop2, listen2, admin1, admin2)
        with pytest.raises(BenchError, match="not mTLS, refusing to measure") as refused:
            await prove_mtls(PEER_BY_NAME[proxy], hops, identities, probe=True)
        wanted = "plaintext fallback" if proxy == "triomesh" else "no TLS handshake"
        assert wanted in str(refused.value)
