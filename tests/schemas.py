"""The JSON Schemas of netiso's `-o json` outputs, as shipped in the package, for tests."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator

COMMANDS = ("render", "apply", "status", "uninstall", "simulate", "version", "plan", "bootstrap")


def schema(command: str) -> dict[str, Any]:
    text = files("netiso.manifests").joinpath("schemas", f"{command}.schema.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def validate(command: str, document: Any) -> None:
    """Raise jsonschema's ValidationError (naming the path) when ``document`` does not fit."""
    validator = Draft202012Validator(schema(command))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise AssertionError(f"{command} output does not fit its schema at {where}: "
                             f"{first.message} ({len(errors)} error(s))")
