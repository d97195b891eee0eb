"""Loading the AWS http-desync-guardian corpus (test data under ./data, Apache-2.0; see its README)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

CORPUS_DIR = Path(__file__).parent / "data" / "http-desync-guardian"
HOST = "corpus.test"
"""Every case gets this Host first: the corpus is about framing and omits Host, which HTTP/1.1 requires."""


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    tier: str
    reason: str
    raw: bytes
    encoding: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}[{self.encoding}]"


def _raw(case: dict[str, object], encoding: str) -> bytes:
    method, uri, version = (str(case[k]) for k in ("method", "uri", "version"))
    line = f"{method} {uri} {version}" if version else f"{method} {uri}"
    lines = [line, f"Host: {HOST}"]
    headers = case.get("headers") or []
    assert isinstance(headers, list)
    lines.extend(f"{h['name']}: {h['value']}" for h in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode(encoding)


def load_cases() -> list[Case]:
    """Every case of every file, as UTF-8 bytes, plus a Latin-1 variant where that spells it differently
    (a YAML ``"\\x88"`` is U+0088: one byte in Latin-1, two in UTF-8; both are plausible on the wire)."""
    cases: list[Case] = []
    for path in sorted(CORPUS_DIR.glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
            expected = entry["expected"]
            variants = {"utf-8": _raw(entry, "utf-8")}
            try:
                latin = _raw(entry, "latin-1")
            except UnicodeEncodeError:
                latin = variants["utf-8"]
            if latin != variants["utf-8"]:
                variants["latin-1"] = latin
            for encoding, raw in variants.items():
                cases.append(Case(path.stem, entry["name"], expected["tier"], expected["reason"], raw, encoding))
    return cases
