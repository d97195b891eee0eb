"""mesh-init's runtime failures (exit 1). Bad flags and config values are ``config.ConfigError`` (exit 2)."""

from __future__ import annotations


class InitError(Exception):
    """A runtime failure the operator can act on; the message says what is wrong and what to do."""


class MissingBinaryError(InitError):
    """A needed executable (iptables-nft-restore, ...) is not on PATH."""


class PrivilegeError(InitError):
    """mesh-init lacks root / CAP_NET_ADMIN in the pod's network namespace."""


class CommandError(InitError):
    """An iptables command failed; the message carries its stderr."""


class ApplyError(InitError):
    """Applying failed part-way; what had changed was rolled back (or the message says what was not)."""
