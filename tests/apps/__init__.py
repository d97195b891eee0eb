"""Real applications for the proxy's protocol tests: an HTTP/1.1 origin, a gRPC service, a WebSocket echo server and
a banner-first TCP server. Each runs in-process for loopback tests or as ``python -m tests.apps.<name>`` inside a
lab pod, and each is tested directly (no proxy) in test_apps.py, so a failing proxy test never blames the app."""
