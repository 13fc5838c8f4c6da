"""The offline NetworkPolicy evaluator (pure: no Kubernetes client, no CLI, no I/O).

Typical use::

    cluster = Cluster.from_objects(objs)          # Namespace, Pod, NetworkPolicy dicts
    engine = Engine(cluster)
    verdict = engine.check("prod/web", "ip:203.0.113.10", 443)   # -> Verdict
    matrix = engine.matrix(80, "TCP")                              # -> Matrix

``verify`` compares real traffic with ``Engine.evaluate``; ``plan`` diffs two matrices.
"""

from netiso.policy.engine import (
    Cluster,
    Endpoint,
    Engine,
    ExternalEndpoint,
    Flow,
    Matrix,
    PodEndpoint,
    RuleMatch,
    SideVerdict,
    Verdict,
)
from netiso.policy.explain import explain, explain_side, portability_notes
from netiso.policy.loader import LoadedObjects, label_selector, load_objects, parse_documents
from netiso.policy.model import (
    ContainerPort,
    Direction,
    IPBlock,
    Namespace,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyInputError,
    PortMatch,
    Protocol,
    Rule,
    default_policy_types,
    is_port_name,
)
from netiso.policy.selectors import LabelSelector, Operator, Requirement

__all__ = [
    "Cluster",
    "ContainerPort",
    "Direction",
    "Endpoint",
    "Engine",
    "ExternalEndpoint",
    "Flow",
    "IPBlock",
    "LabelSelector",
    "LoadedObjects",
    "Matrix",
    "Namespace",
    "NetworkPolicy",
    "Operator",
    "Peer",
    "Pod",
    "PodEndpoint",
    "PolicyInputError",
    "PortMatch",
    "Protocol",
    "Requirement",
    "Rule",
    "RuleMatch",
    "SideVerdict",
    "Verdict",
    "default_policy_types",
    "explain",
    "explain_side",
    "is_port_name",
    "label_selector",
    "load_objects",
    "parse_documents",
    "portability_notes",
]
