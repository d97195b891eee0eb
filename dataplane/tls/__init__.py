"""Mutual TLS between proxies: pyOpenSSL contexts built from an ``identity.Identity`` and a trio stream over them."""
