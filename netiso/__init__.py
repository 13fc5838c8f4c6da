"""netiso: NetworkPolicy enforcement, a baseline isolation bundle, and proof by real traffic."""

__version__ = "0.1.0"
