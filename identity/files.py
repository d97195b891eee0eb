"""Writing and reading key material so that no reader ever sees half of it.

A single file is written to a temporary name in the same directory, fsynced and renamed over the old one.
An identity is three files that must match (cert, key, bundle), so it is published the way the kubelet
publishes a Secret volume: the files live in a fresh hidden directory, ``..data`` is a symlink to it that is
swapped with one rename, and ``cert.pem`` etc. are symlinks through ``..data``. A reader resolves ``..data``
once and reads every file from that directory (``read_set``), so it gets the old set or the new set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

DATA_LINK: Final = "..data"
_VERSION_PREFIX: Final = "..20"  # versioned directories are named ..<UTC timestamp>, e.g. ..2026_11_26_04_10_23.1
_READ_ATTEMPTS: Final = 3  # a reader can lose a race with the writer's clean-up at most this often


class MaterialError(Exception):
    """A file we cannot read or write; ``path`` names it and the message says the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def write_file(path: Path, data: bytes, *, mode: int, owner: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (and ``owner``, a UID and GID: the temporary file has
    them from the start, so no reader ever sees the file with the wrong ones)."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner, owner)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def publish_set(directory: Path, files: Mapping[str, tuple[bytes, int]], *, owner: int | None = None) -> None:
    """Atomically replace the set of ``files`` (name -> (data, mode)) in ``directory``, kubelet style; ``owner``:
    the UID (and GID) the files belong to before the set is switched in (the proxy's, to read a 0600 key)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y_%m_%d_%H_%M_%S.%f")
    version = Path(tempfile.mkdtemp(dir=directory, prefix=f"..{stamp}."))
    os.chmod(version, 0o755)
    for name, (data, mode) in files.items():
        write_file(version / name, data, mode=mode, owner=owner)
    _symlink_atomically(version.name, directory / DATA_LINK)
    for name in files:
        target = directory / name
        if not (target.is_symlink() and os.readlink(target) == f"{DATA_LINK}/{name}"):
            _symlink_atomically(f"{DATA_LINK}/{name}", target)
    for entry in directory.iterdir():
        # Readers that resolved an older ..data retry on FileNotFoundError (read_set), so removal is safe.
        if entry.name.startswith(_VERSION_PREFIX) and entry.name != version.name:
            shutil.rmtree(entry, ignore_errors=True)


def read_set(directory: Path, names: Sequence[str]) -> dict[str, bytes]:
    """Read ``names`` from one version of ``directory`` (a published set or plain files an operator wrote)."""
    for _ in range(_READ_ATTEMPTS):
        data_link = directory / DATA_LINK
        base = directory / os.readlink(data_link) if data_link.is_symlink() else directory
        try:
            return {name: (base / name).read_bytes() for name in names}
        except FileNotFoundError:
            if base == directory:
                break
            continue  # the writer removed this version after we resolved ..data: read the new one
        except OSError as exc:
            raise MaterialError(Path(exc.filename or directory), exc.strerror or str(exc)) from None
    for name in names:
        if not (directory / name).exists():
            raise MaterialError(directory / name, "no such file")
    raise MaterialError(directory, "the files kept changing while being read")


def _symlink_atomically(target: str, link: Path) -> None:
    temp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    os.symlink(target, temp)
    os.replace(temp, link)
