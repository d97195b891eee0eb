"""What a plaintext proxy must not load at start: the TLS stack (OpenSSL, cryptography) is about 13 MiB of RSS
that only ``--identity`` needs (perf's ``rest`` scenario measured 44 MiB instead of 34 when it crept in)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_starting_the_proxy_without_identity_loads_no_tls_stack() -> None:
    check = (
        "import sys, dataplane.app, dataplane.__main__\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('OpenSSL', 'cryptography', 'yaml', 'tomllib'))\n"
        "print(' '.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
