"""perf.http1_parsers: every measured operation does what it claims, and the corpus comparison runs."""

from __future__ import annotations

from perf import http1_parsers as bench


def test_operations_parse_what_they_measure() -> None:
    bench.ours_request()
    bench.h11_request()
    bench.httptools_request()
    bench.ours_response()
    bench.h11_response()
    bench.httptools_response()
    assert b"x-forwarded-for: 10.0.0.7" in bench.ours_forward()
    assert b"connection" not in bench.ours_forward().lower()
    reads = bench.chunked_request(70 * 1024)
    bench.ours_chunked(reads, 70 * 1024)
    bench.h11_chunked(reads, 70 * 1024)
    bench.httptools_chunked(reads, 70 * 1024)


def test_corpus_comparison() -> None:
    verdicts, tiers = bench.corpus_verdicts()
    assert tiers["Severe"] == 58
    assert verdicts["triomesh"]["Severe"] == 58
    assert set(verdicts) == {"triomesh", "h11", "httptools"}


def test_cpu_us_is_positive() -> None:
    assert bench.cpu_us(lambda: None, budget_s=0.01, repeat=3) > 0
