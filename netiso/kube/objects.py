"""Kubernetes objects as plain data: reading manifests, comparing, who wrote what. Pure.

Design decisions:

* **Dicts, not models.** Objects are the JSON the API server speaks (see ``client``); these
  helpers read and trim them without a round trip through the generated model classes.
* **Manifests the way kubectl reads them.** Multi-document YAML, empty documents skipped,
  ``kind: List`` flattened into its items; anything without apiVersion, kind and
  metadata.name is bad input naming its document, before a single request is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from netiso.errors import UsageError

FIELD_MANAGER = "netiso"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

Obj = dict[str, Any]


def strip_server_fields(obj: Mapping[str, Any]) -> Obj:
    """The object without what the server adds (status, uid, managedFields, ...), for diffs."""
    out: Obj = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                "selfLink"):
        meta.pop(key, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != LAST_APPLIED}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def field_managers(obj: Mapping[str, Any]) -> list[str]:
    """Names of the managers recorded in managedFields (who else edits this object)."""
    return sorted({str(m.get("manager")) for m in
                   (obj.get("metadata") or {}).get("managedFields") or [] if m.get("manager")})


def describe(obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` (or ``Kind name``) for messages."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {where}{meta.get('name', '?')}"


def has_condition(obj: Mapping[str, Any] | None, kind: str, status: str = "True") -> bool:
    """Whether ``status.conditions`` holds ``kind`` with ``status`` (e.g. a CRD Established)."""
    if not obj:
        return False
    return any(c.get("type") == kind and c.get("status") == status
               for c in (obj.get("status") or {}).get("conditions") or [])


def parse_manifests(text: str, source: str = "<manifest>") -> list[Obj]:
    """The objects of a multi-document YAML manifest, in file order. Pure."""
    out: list[Obj] = []
    try:
        # libyaml's loader when present: operator-crds.yaml alone is 3 MB.
        loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        docs = list(yaml.load_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        raise UsageError(f"{source} is not valid YAML: {exc}") from exc
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        items = doc.get("items") if isinstance(doc, Mapping) and str(
            doc.get("kind", "")).endswith("List") and "items" in doc else [doc]
        for item in items or []:
            if not isinstance(item, Mapping):
                raise UsageError(f"{source}: document {index + 1} is not a Kubernetes object")
            meta = item.get("metadata")
            if not item.get("apiVersion") or not item.get("kind") or not isinstance(
                    meta, Mapping) or not meta.get("name"):
                raise UsageError(f"{source}: document {index + 1} lacks apiVersion, kind or "
                                 "metadata.name")
            out.append(dict(item))
    return out


def load_manifests(path: str | Path) -> list[Obj]:
    """The objects of a manifest file (see ``parse_manifests``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}") from exc
    return parse_manifests(text, str(path))
