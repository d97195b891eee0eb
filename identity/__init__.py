"""SPIFFE identities for the mesh: IDs, X.509-SVIDs, their verification, and the trust domain's CA.

A library with no I/O framework: the data plane (``dataplane.tls``) and ``meshctl ca`` build on it.
"""
