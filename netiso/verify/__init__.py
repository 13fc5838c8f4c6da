"""`netiso verify`: prove with real traffic, on every node, that the policies bite.

``scenarios`` (nodes, probes and flows as data), ``checks`` (named checks and how a flow is
judged), ``probes`` (Jobs, termination messages, waits with the pods' own reasons), ``junit``
(the CI report) are independent pieces; ``run.verify`` puts them together. Only ``probes`` and
``run`` talk to the cluster, through ``netiso.kube``.
"""
