"""Mesh mTLS in the data path: originating it to meshed destinations, terminating it for the pod."""
