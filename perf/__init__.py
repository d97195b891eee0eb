"""The benchmark harness: triomesh against Envoy, nginx, HAProxy and no proxy, on loopback or in the lab.

``python -m perf run`` (``make bench``) runs every scenario for every proxy in one interleaved run and writes a
markdown report, a chart and the raw JSON under ``perf/results/``. docs/benchmarks.md says how to read them.
"""
