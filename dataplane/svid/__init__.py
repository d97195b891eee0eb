"""The proxy's own SPIFFE identity at run time: the current SVID and its TLS contexts, and the --identity watcher."""
