"""mesh-proxy: the triomesh data plane. Kept empty and trio-free so ``ctl`` can import ``dataplane.admin.schema``."""
