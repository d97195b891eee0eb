"""``meshctl ca init DIR`` and ``meshctl ca issue``: a trust domain's root CA and the X.509-SVIDs it signs.

The work is ``identity.authority``; this module maps flags to it and its errors to exit statuses: a flag the
CA cannot honour (an identity outside its trust domain, a lifetime past the root's) exits 2 naming the flag, an
unusable CA directory or a refused overwrite exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from ctl.commands import Subparsers
from ctl.commands.argtypes import checked
from ctl.errors import CtlError, UsageError
from identity.authority import (
    BUNDLE_FILE,
    CA_CERT,
    CA_KEY,
    CERT_FILE,
    KEY_FILE,
    AuthorityError,
    create_root,
    issue_svid,
    load_root,
    publish_svid,
    save_root,
)
from identity.spiffe import parse_spiffe_id, parse_trust_domain
from policy.duration import Duration

DEFAULT_TRUST_DOMAIN: Final = "cluster.local"  # Istio's and Linkerd's default
DEFAULT_ROOT_TTL: Final = "87600h"  # 10 years, like Linkerd's trust anchor
DEFAULT_SVID_TTL: Final = "24h"  # Linkerd's issuanceLifetime and Istio's SECRET_TTL
_MAX_UID: Final = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown
_FLAG_OF: Final = {"identity": "--identity", "ttl": "--ttl", "ca": "--ca", "force": "--force"}


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "ca",
        help="create a trust domain's root CA and issue X.509-SVIDs",
        description="A trust domain's root CA (ECDSA P-256) and the SPIFFE X.509-SVIDs it signs.",
    )
    actions = parser.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init",
        help="create a root CA in DIR (ca.crt, ca.key)",
        description="Create a trust domain's root CA in DIR: ca.crt and ca.key (mode 0600).",
    )
    init.add_argument("directory", metavar="DIR", type=Path, help="where to write ca.crt and ca.key")
    init.add_argument(
        "--trust-domain",
        type=checked(parse_trust_domain),
        default=DEFAULT_TRUST_DOMAIN,
        help=f"the trust domain (lowercase; default {DEFAULT_TRUST_DOMAIN})",
    )
    init.add_argument(
        "--ttl", type=checked(_lifetime), default=_lifetime(DEFAULT_ROOT_TTL), help="root lifetime (default 87600h)"
    )
    init.add_argument("--force", action="store_true", help="replace an existing root (every SVID it signed dies)")
    init.set_defaults(run=run_init)
    issue = actions.add_parser(
        "issue",
        help="issue an X.509-SVID into OUTDIR (cert.pem, key.pem, bundle.pem)",
        description="Issue an X.509-SVID with a fresh key; the three files replace any previous set atomically.",
    )
    issue.add_argument("--ca", required=True, type=Path, metavar="DIR", help="the directory `ca init` wrote")
    issue.add_argument(
        "--identity",
        required=True,
        type=checked(parse_spiffe_id),
        metavar="SPIFFE_ID",
        help="spiffe://TD/ns/NS/sa/SA, in the CA's trust domain",
    )
    issue.add_argument(
        "--ttl", type=checked(_lifetime), default=_lifetime(DEFAULT_SVID_TTL), help="lifetime (default 24h)"
    )
    issue.add_argument("--out", required=True, type=Path, metavar="OUTDIR", help="the identity directory to write")
    issue.add_argument(
        "--owner",
        type=checked(_uid),
        default=None,
        metavar="UID",
        help="own the files by this UID (and GID) from the start, e.g. 1337 for the proxy (needs root); "
        "default: whoever runs meshctl",
    )
    issue.set_defaults(run=run_issue)


def run_init(args: argparse.Namespace) -> int:
    directory: Path = args.directory
    with _mapped():
        root = create_root(args.trust_domain, now=datetime.now(UTC), ttl=args.ttl)
        save_root(directory, root, force=args.force)
    print(
        f"created the root CA of trust domain {root.trust_domain!r} in {directory} ({CA_CERT}, {CA_KEY}); "
        f"expires {root.cert.not_after.isoformat()}"
    )
    return 0


def run_issue(args: argparse.Namespace) -> int:
    out: Path = args.out
    with _mapped():
        root = load_root(args.ca)
        svid = issue_svid(root, args.identity, now=datetime.now(UTC), ttl=args.ttl)
        publish_svid(out, svid, owner=args.owner)
    print(
        f"issued {svid.spiffe_id} (serial {svid.cert.serial:x}, expires {svid.cert.not_after.isoformat()}) "
        f"into {out} ({CERT_FILE}, {KEY_FILE}, {BUNDLE_FILE})"
    )
    return 0


def _uid(text: str) -> int:
    if not text.isdigit() or int(text) > _MAX_UID:
        raise ValueError(f"{text!r} is not a numeric user id (0-{_MAX_UID})")
    return int(text)


def _lifetime(text: str) -> timedelta:
    seconds = Duration.parse(text).seconds
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return timedelta(seconds=seconds)


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """Turn the CA's errors into meshctl's: a flag it cannot honour exits 2, anything else 1."""
    try:
        yield
    except AuthorityError as exc:
        flag = _FLAG_OF[exc.field]
        if exc.field in ("identity", "ttl"):
            raise UsageError(f"argument {flag}: {exc}") from None
        if exc.field == "ca":
            raise CtlError(f"{flag}: {exc}") from None
        raise CtlError(f"{exc} (pass {flag} to replace it)") from None
    except OSError as exc:
        raise CtlError(f"{exc.filename or ''}: {exc.strerror or exc}") from None
