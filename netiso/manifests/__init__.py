"""Package data: the baseline bundle's NetworkPolicy templates (``bundle/*.yaml``).

Read with :mod:`importlib.resources` by :mod:`netiso.bundle`, so the templates ship inside the
wheel and are found wherever netiso is installed.
"""
