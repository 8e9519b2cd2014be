"""Check fakecvat's JSON responses against CVAT v2.52.0's own OpenAPI schema.

The schema (``tests/data/cvat-schema-2.52.0.yml``, OpenAPI 3.0) is loaded once per process and
translated to JSON Schema (draft 4, which shares OpenAPI 3.0's keyword semantics):

- ``nullable: true`` becomes ``anyOf: [{type: null}, <schema>]``;
- ``readOnly``/``writeOnly``/``deprecated``/``example`` are dropped, and a ``writeOnly`` property
  is not required in a response;
- ``$ref: #/components/schemas/X`` becomes ``#/definitions/X`` (recursion stays a reference).

``validate_response(method, path, status, body)`` finds the operation by method and path
template (the schema writes some paths with a trailing slash, matched either way), picks the
response schema for the status (or ``default``) and returns the violations as strings, minus
those in :data:`ALLOWLIST`. ``install_hook(app, sink)`` runs that on every ``/api/...`` JSON
response a Flask app sends; tests/conftest.py wires it into the ``fakecvat`` fixture.
"""
from __future__ import annotations

import fnmatch
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).parent / "data" / "cvat-schema-2.52.0.yml"
METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
JSON_TYPES = ("application/vnd.cvat+json", "application/json")


@dataclass(frozen=True)
class Allowed:
    """A deliberate deviation: violations of ``method template`` at ``where`` (fnmatch over
    the error's JSON path, e.g. ``results/*/version``) are accepted, for ``reason``."""
    method: str
    template: str
    where: str
    reason: str


# Deliberate deviations from the 2.52 schema. Keep each one justified.
ALLOWLIST: list[Allowed] = [
    Allowed("GET", "/api/server/health", "<undocumented>",
            "CVAT serves django-health-check at /api/server/health/ outside its OpenAPI schema; "
            "fakecvat answers it so that wait-for-server loops work"),
    # CVAT keeps a receiver's answer as text in a JSONField, so deliveries carry a JSON string
    # (cvat-api.md §10.1), while the schema declares an object.
    Allowed("POST", "/api/webhooks/{id}/ping", "response", "webhook delivery response is a string in CVAT"),
    Allowed("GET", "/api/webhooks/{id}/deliveries/{delivery_id}", "response",
            "webhook delivery response is a string in CVAT"),
    Allowed("GET", "/api/webhooks/{id}/deliveries", "results/*/response",
            "webhook delivery response is a string in CVAT"),
    Allowed("GET", "/api/webhooks/events", "webhook_type",
            "without ?type= CVAT answers webhook_type \"all\", outside the schema's enum"),
]


# ---- loading and translating ------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def load_schema() -> dict:
    with open(SCHEMA_PATH, "rb") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def to_json_schema(node):
    """Translate one OpenAPI 3.0 schema object (recursively) to JSON Schema draft 4."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": node["$ref"].replace("#/components/schemas/", "#/definitions/")}
    out = {}
    write_only = set()
    for k, v in node.items():
        if k in ("readOnly", "writeOnly", "deprecated", "example", "nullable", "discriminator", "xml",
                 "externalDocs", "description", "title"):
            continue
        if k == "properties":
            out[k] = {name: to_json_schema(p) for name, p in v.items()}
            write_only = {name for name, p in v.items() if isinstance(p, dict) and p.get("writeOnly")}
        elif k in ("items", "additionalProperties", "not"):
            out[k] = to_json_schema(v)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [to_json_schema(s) for s in v]
        else:
            out[k] = v
    if write_only and "required" in out:
        out["required"] = [r for r in out["required"] if r not in write_only]
        if not out["required"]:
            del out["required"]
    if node.get("nullable"):
        return {"anyOf": [{"type": "null"}, out]}
    return out


@functools.lru_cache(maxsize=1)
def definitions() -> dict:
    return {name: to_json_schema(s) for name, s in load_schema()["components"]["schemas"].items()}


@functools.lru_cache(maxsize=1)
def _routes() -> list[tuple[re.Pattern, str, dict]]:
    """(regex, template, path item), literal segments before templated ones, so that
    ``/api/projects/backup/`` wins over ``/api/projects/{id}``."""
    routes = []
    for template, item in load_schema()["paths"].items():
        pattern = re.escape(template.rstrip("/"))
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
        routes.append((re.compile("^" + pattern + "/?$"), template, item))
    routes.sort(key=lambda r: (r[1].count("{"), -len(r[1])))
    return routes


def find_operation(method: str, path: str) -> tuple[str, dict] | None:
    """``(template, operation)`` for a concrete request, or None when the schema has none."""
    for regex, template, item in _routes():
        if regex.match(path):
            op = item.get(method.lower())
            if op is not None:
                return template, op
    return None


class Undocumented(Exception):
    """The schema has no operation, or no response for this status."""


def response_schema(method: str, path: str, status: int) -> dict | None:
    """JSON Schema of the body for this response; None when the schema documents no body.
    Raises :class:`Undocumented` when the operation or the status is not in the schema."""
    found = find_operation(method, path)
    if found is None:
        raise Undocumented(f"{method} {path} is not an operation of CVAT 2.52")
    template, op = found
    responses = op.get("responses", {})
    resp = responses.get(str(status)) or responses.get("default")
    if resp is None:
        raise Undocumented(f"{method} {template}: status {status} is not documented "
                           f"(documented: {', '.join(sorted(responses))})")
    if "$ref" in resp:
        resp = load_schema()["components"]["responses"][resp["$ref"].rsplit("/", 1)[-1]]
    content = resp.get("content") or {}
    for ctype in JSON_TYPES:
        if ctype in content and "schema" in content[ctype]:
            return to_json_schema(content[ctype]["schema"])
    return None


# ---- validating ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _validator(method: str, template: str, status: int) -> jsonschema.Draft4Validator:
    # One compiled validator per operation and status: thousands of responses per test run.
    path = re.sub(r"\{[^}]+\}", "1", template)
    root = dict(response_schema(method, path, status), definitions=definitions())
    return jsonschema.Draft4Validator(root)


def _allowed(method: str, template: str, where: str) -> bool:
    return any(a.method == method.upper() and a.template == template and fnmatch.fnmatchcase(where, a.where)
               for a in ALLOWLIST)


def validate_response(method: str, path: str, status: int, body) -> list[str]:
    """Violations of the schema by one JSON response body (an empty list when it conforms).

    Error statuses (>= 400) that the schema does not document are not checked: CVAT's schema
    documents few of them, and their bodies vary by design (cvat-api.md §11)."""
    method = method.upper()
    try:
        schema = response_schema(method, path, status)
    except Undocumented as e:
        if status >= 400:
            return []
        template = (find_operation(method, path) or (path, None))[0]
        return [] if _allowed(method, template, "<undocumented>") else [str(e)]
    if schema is None:
        return []
    template = find_operation(method, path)[0]
    validator = _validator(method, template, status)
    out = []
    for err in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        if _allowed(method, template, where):
            continue
        out.append(f"{method} {path} [{status}] at {where}: {err.message[:500]}")
    return out


def install_hook(app, sink: list) -> None:
    """Validate every JSON ``/api/...`` response ``app`` sends; append violations to ``sink``.

    Must be called before the app serves its first request (Flask forbids later setup)."""
    from flask import request

    @app.after_request
    def _check_schema(resp):
        if not request.path.startswith("/api/"):
            return resp
        if resp.is_streamed or resp.direct_passthrough:
            return resp
        if (resp.mimetype or "") not in JSON_TYPES:
            return resp
        raw = resp.get_data()
        if not raw:
            return resp
        try:
            body = json.loads(raw)
        except ValueError:
            sink.append(f"{request.method} {request.path} [{resp.status_code}]: body is not JSON despite {resp.mimetype}")
            return resp
        sink.extend(validate_response(request.method, request.path, resp.status_code, body))
        return resp
