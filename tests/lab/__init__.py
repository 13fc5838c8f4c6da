"""The netiso lab: a real single-machine Kubernetes with real NetworkPolicy enforcement.

See tests/lab/README.md. Entry points: ``python -m tests.lab up|down|status|enforce on|off|build``
and the pytest fixtures in tests/cluster/conftest.py.
"""
