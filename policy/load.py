"""Decode a policy bundle (YAML, JSON or TOML) into a ``Policy``, reporting every problem at once.

Pure: no trio. The pipeline is parse (syntax, repeated keys) -> shape (types, constraints, unknown fields,
following the model's msgspec type info) -> semantics (cross-field rules) -> ``msgspec.convert`` into the
frozen Structs. msgspec alone stops at the first error; the first three steps exist so ``meshctl policy
validate`` and the reload log can name all of them, each with its path.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO, Final

import msgspec
import msgspec.inspect as mi

from policy.codec import dec_hook, enc_hook
from policy.model import Policy
from policy.parse import Format, parse_document
from policy.problems import PolicyError, Problem
from policy.semantics import check_semantics
from policy.shape import MAX_VALUES, TooLargeError, check_shape

__all__ = [
    "MAX_BUNDLE_BYTES",
    "Format",
    "PolicyError",
    "Problem",
    "decode_policy",
    "encode_policy",
    "format_for_path",
    "load_policy_file",
    "policy_version",
    "read_bundle",
]

# A bundle is a few KiB; the cap stops a wrong path (a log file, a disk image) from being read into memory.
MAX_BUNDLE_BYTES: Final = 1024 * 1024
_EXTENSIONS: Final[dict[str, Format]] = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}
_POLICY_TYPE: Final = mi.type_info(Policy)
_VERSION_HEX_DIGITS: Final = 12
_NO_FIELDS: Final = (
    "the document sets no fields (a half-written file looks like this); "
    "to run with every default on purpose, set version to 1"
)


def format_for_path(path: str | os.PathLike[str]) -> Format:
    """The bundle format named by the file's extension (.yaml/.yml, .json, .toml); PolicyError otherwise."""
    _, extension = os.path.splitext(os.fspath(path))
    fmt = _EXTENSIONS.get(extension.lower())
    if fmt is None:
        shown = repr(extension) if extension else "no extension"
        raise PolicyError(
            os.fspath(path),
            (Problem("", f"cannot tell the format from {shown}: name the file .yaml, .yml, .json or .toml"),),
        )
    return fmt


def decode_policy(data: bytes, fmt: Format, *, source: str = "<bytes>") -> Policy:
    """Decode a bundle; PolicyError listing every problem (with its path) if it is not a valid policy."""
    parsed = parse_document(data, fmt)
    if not parsed.complete:
        raise PolicyError(source, parsed.problems)
    if parsed.document is None or parsed.document == {}:
        raise PolicyError(source, (*parsed.problems, Problem("", _NO_FIELDS)))
    try:
        checked, shape_problems = check_shape(parsed.document, _POLICY_TYPE)
    except TooLargeError:
        too_large = Problem("", f"the document holds more than {MAX_VALUES} values; a bundle is far smaller")
        raise PolicyError(source, (too_large,)) from None
    problems = (*parsed.problems, *shape_problems, *check_semantics(checked))
    if problems:
        raise PolicyError(source, problems)
    try:
        return msgspec.convert(parsed.document, Policy, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        # The shape check mirrors msgspec's rules, so this means the two disagree: report it, never crash.
        raise PolicyError(source, (_from_msgspec(str(exc)),)) from exc


def read_bundle(file: BinaryIO, source: str) -> bytes:
    """Read a whole bundle from an open file, refusing one larger than MAX_BUNDLE_BYTES."""
    data = file.read(MAX_BUNDLE_BYTES + 1)
    if len(data) > MAX_BUNDLE_BYTES:
        raise PolicyError(source, (Problem("", f"the file is larger than {MAX_BUNDLE_BYTES} bytes"),))
    return data


def load_policy_file(path: str | os.PathLike[str]) -> Policy:
    """Read and decode a bundle file; PolicyError for a missing/unreadable file or a bad bundle."""
    source = os.fspath(path)
    fmt = format_for_path(path)
    try:
        with open(path, "rb") as file:
            data = read_bundle(file, source)
    except OSError as exc:
        raise PolicyError(source, (Problem("", describe_os_error(exc)),)) from None
    return decode_policy(data, fmt, source=source)


def describe_os_error(exc: OSError) -> str:
    """Why a bundle file could not be read, in plain words."""
    match exc:
        case FileNotFoundError():
            return "file not found"
        case IsADirectoryError():
            return "is a directory, not a policy file"
        case PermissionError():
            return "permission denied"
    return f"cannot read the file: {exc.strerror or exc}"


def encode_policy(policy: Policy) -> bytes:
    """Canonical JSON: every field, in model order, Durations as their canonical text; equal policies give
    equal bytes."""
    return msgspec.json.encode(policy, enc_hook=enc_hook)


def policy_version(policy: Policy) -> str:
    """A short content hash that changes whenever the policy does: first 12 hex digits of sha256 of the
    canonical JSON."""
    return hashlib.sha256(encode_policy(policy)).hexdigest()[:_VERSION_HEX_DIGITS]


def _from_msgspec(message: str) -> Problem:
    # msgspec: "Expected `int` >= 1 - at `$.inbound.ports[0].port`"
    text, _, where = message.rpartition(" - at `")
    if not text:
        return Problem("", message)
    path = where.rstrip("`").removeprefix("$").removeprefix(".")
    return Problem(path, text)
