"""Cluster operations on the bundle: apply, status, uninstall, and how they choose targets.

Design decisions:

* **A floor shared by the three commands.** ``ownership`` (what marks an object as netiso's),
  ``drift`` (how a live NetworkPolicy compares with the rendered one), ``order`` (allows before
  denies) and ``pool`` (bounded concurrent work) are what apply, status and uninstall need; each
  command module imports them and never another command module, so the package has no cycle
  (apply used to import status for the comparison while status imported apply for ownership).
  An import-linter contract in pyproject keeps it so.
* **Through ``netiso.kube`` only.** Every module here talks to the cluster through the ``Kube``
  client (or a Protocol it satisfies), never the Kubernetes library.
"""
