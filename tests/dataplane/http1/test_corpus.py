"""The AWS http-desync-guardian corpus, table-driven (reliability.md G1, table (c)).

Severe -> refused with a 4xx before anything is produced for forwarding. Ambiguous -> refused, or forwarded in one
canonical form that re-parses to the same head with a single framing header. Compliant and Acceptable ->
forwarded, except the cases listed in REFUSED_ACCEPTABLE / REFUSED_COMPLIANT, which break an RFC 9112 rule or
a reliability.md G1 rule (docs/http1.md explains each).
"""

from __future__ import annotations

from collections import Counter

import pytest

from dataplane.http.forwarding import set_forwarded, strip_hop_by_hop
from dataplane.http.model import RequestHead
from dataplane.http.wire import serialise_request_head
from dataplane.http1.errors import Http1Error
from dataplane.http1.events import RequestReceived
from dataplane.http1.parser import RequestParser
from tests.dataplane.http1.corpus import Case, load_cases

CASES = load_cases()

REFUSED_ACCEPTABLE = {
    # RFC 9112 5.1: whitespace between field name and colon MUST be rejected with 400.
    "No TE/CL headers, some others are non-compliant": "bad_header",
    "TE and some others are non-compliant": "bad_header",
    "CL and some others are non-compliant": "bad_header",
    # A field name is a token (RFC 9110 5.1); G1.4 refuses control bytes in names.
    "A non-essential header with a non-printable character (x01)": "bad_header",
    "Some-Header\\x01": "bad_header",
    "\\x01Some-Header": "bad_header",
    # HTTP/0.9 is not spoken (505); a request line without a version is not HTTP/1.x at all (400).
    "Non-RFC, but OK HTTP/0.9": "bad_version",
    "Empty version, which means HTTP/0.9": "bad_request_line",
    # RFC 9112 3: request-line = method SP request-target SP HTTP-version; no extra or embedded spaces (G1.7).
    "Extra spaces in version": "bad_request_line",
    "[space] in URI": "bad_request_line",
}

REFUSED_COMPLIANT = {
    # "GET  HTTP/1.1": an empty request-target is in none of RFC 9112's four forms; guessing "/" is a repair.
    "Empty URI": "bad_request_line",
}


def _first_event(raw: bytes) -> RequestReceived | Http1Error:
    parser = RequestParser()
    parser.receive_data(raw)
    try:
        event = parser.next_event()
    except Http1Error as exc:
        return exc
    assert isinstance(event, RequestReceived), f"a complete head must give a verdict, got {event!r}"
    return event


def _assert_canonical(event: RequestReceived) -> None:
    """The forwarded bytes re-parse to the same head, with exactly one framing header, and are a fixed point."""
    wire = serialise_request_head(event.head, event.framing)
    again = _first_event(wire)
    assert isinstance(again, RequestReceived), again
    assert again.head == event.head
    assert again.framing == event.framing
    assert serialise_request_head(again.head, again.framing) == wire

    headers = strip_hop_by_hop(event.head.headers)
    set_forwarded(headers, client=b"10.0.0.1", proto=b"http")
    forwarded = serialise_request_head(
        RequestHead(event.head.method, event.head.target, b"1.1", headers), event.framing
    )
    names = [line.split(b":", 1)[0].lower() for line in forwarded.split(b"\r\n")[1:-2]]
    assert names.count(b"content-length") + names.count(b"transfer-encoding") <= 1
    reparsed = _first_event(forwarded)
    assert isinstance(reparsed, RequestReceived), reparsed
    assert reparsed.framing == event.framing


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case) -> None:
    result = _first_event(case.raw)
    if case.tier == "Severe":
        assert isinstance(result, Http1Error), f"Severe case forwarded: {case.raw!r}"
        assert 400 <= result.status < 500
    elif case.tier == "Ambiguous":
        if isinstance(result, RequestReceived):
            _assert_canonical(result)
    elif case.name in REFUSED_ACCEPTABLE or case.name in REFUSED_COMPLIANT:
        expected = REFUSED_ACCEPTABLE if case.tier == "Acceptable" else REFUSED_COMPLIANT
        assert isinstance(result, Http1Error), f"expected a refusal: {case.raw!r}"
        assert result.reason == expected[case.name]
    else:
        assert case.tier in ("Compliant", "Acceptable")
        assert isinstance(result, RequestReceived), f"{case.tier} case refused: {result!r}"
        _assert_canonical(result)


def test_summary_per_tier(capsys: pytest.CaptureFixture[str]) -> None:
    """Counts per tier (printed with -s; the assertions are the targets of reliability.md table (c))."""
    outcome: Counter[tuple[str, str]] = Counter()
    for case in CASES:
        if case.encoding != "utf-8":
            continue
        result = _first_event(case.raw)
        outcome[case.tier, "refused" if isinstance(result, Http1Error) else "forwarded"] += 1
    with capsys.disabled():
        print("\nhttp-desync-guardian corpus (one encoding per case):")
        for tier in ("Severe", "Ambiguous", "Acceptable", "Compliant"):
            refused, forwarded = outcome[tier, "refused"], outcome[tier, "forwarded"]
            print(f"  {tier:<10} refused {refused:>3}  forwarded canonically {forwarded:>3}")
    assert outcome["Severe", "forwarded"] == 0
    assert outcome["Severe", "refused"] == 58
    assert outcome["Compliant", "refused"] == len(REFUSED_COMPLIANT)
    assert outcome["Acceptable", "refused"] == len(REFUSED_ACCEPTABLE)
    assert sum(outcome.values()) == 159
