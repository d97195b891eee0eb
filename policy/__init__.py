"""The triomesh policy bundle: schema (model), decoding (load), lookups (index), snapshots (store), watch."""
