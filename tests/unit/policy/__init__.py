"""Unit tests of the offline NetworkPolicy evaluator and `netiso simulate`."""
