"""Builders for API-shaped objects, so each test states only what matters to its rule."""

from __future__ import annotations

from typing import Any

from netiso.policy import Cluster, Engine

Obj = dict[str, Any]


def ns(name: str, **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels)}}


def pod(key: str, ip: str | None = None, ports: list[Obj] | None = None,
        host_network: bool = False, node: str | None = None, host_ip: str | None = None,
        **labels: str) -> Obj:
    namespace, name = key.split("/")
    obj: Obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {"containers": [{"name": "c", "ports": ports or []}]},
        "status": {},
    }
    if ip:
        obj["status"]["podIP"] = ip
    if host_network:
        obj["spec"]["hostNetwork"] = True
    if node:
        obj["spec"]["nodeName"] = node
    if host_ip:
        obj["status"]["hostIP"] = host_ip
    return obj


def netpol(key: str, spec: Obj) -> Obj:
    namespace, name = key.split("/")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def engine(*objs: Obj) -> Engine:
    return Engine(Cluster.from_objects(list(objs), "test"))


def sel(**labels: str) -> Obj:
    return {"matchLabels": dict(labels)}


def expr(key: str, op: str, *values: str) -> Obj:
    e: Obj = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e
