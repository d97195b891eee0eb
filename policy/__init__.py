"""The triomesh policy bundle: schema (model), decoding (load), live snapshots (store) and file watching (watch)."""
