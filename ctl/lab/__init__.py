"""The network-namespace lab: pods are namespaces on a bridge, each with mesh-init, mesh-proxy and a demo app.

Entry points: ``ctl.lab.lab.Lab`` (the Python API), ``ctl.lab.teardown.teardown`` (cleanup without state),
``ctl.lab.demo.run_demo`` (``meshctl lab demo``).
"""
