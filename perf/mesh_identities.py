"""The mTLS scenarios' identities, issued the way an operator would: ``meshctl ca init`` and ``meshctl ca issue``.

One CA and two SVIDs (P-256, URI SANs) per run, under the run's work directory; every mTLS measurement of the
run reuses them. meshctl runs from the checkout, like the proxy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from perf.mtls_peers import CLIENT_ID, SERVER_ID, TRUST_DOMAIN, MeshIdentities, Svid
from perf.processes import BenchError
from perf.proxies import REPO

_TIMEOUT = 30.0  # seconds per meshctl call (each takes about 0.4 s)


async def provision(directory: Path) -> MeshIdentities:
    """A fresh root CA in ``directory/ca`` and an SVID for each hop in ``directory/hop1`` and ``directory/hop2``."""
    ca = directory / "ca"
    await _meshctl("ca", "init", str(ca), "--trust-domain", TRUST_DOMAIN, "--force")
    identities = MeshIdentities(client=Svid(CLIENT_ID, directory / "hop1"), server=Svid(SERVER_ID, directory / "hop2"))
    for svid in identities:
        await _meshctl("ca", "issue", "--ca", str(ca), "--identity", svid.spiffe_id, "--out", str(svid.directory))
    return identities


async def _meshctl(*args: str) -> None:
    argv = [sys.executable, "-m", "ctl", *args]
    try:
        with trio.fail_after(_TIMEOUT):
            done = await trio.run_process(argv, cwd=REPO, capture_stdout=True, capture_stderr=True, check=False)
    except trio.TooSlowError:
        raise BenchError(f"meshctl {' '.join(args[:2])} did not finish within {_TIMEOUT:g}s") from None
    if done.returncode != 0:
        raise BenchError(f"meshctl {' '.join(args[:2])} failed: {done.stderr.decode(errors='replace').strip()}")
