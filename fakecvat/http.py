"""Request parsing and response rendering shared by every blueprint.

Handlers stay thin: ``body()`` to parse JSON, a model call, then ``respond()`` or
``list_response()``. Pagination, search, sort and JSON-logic filters follow CVAT's DRF setup
(reference/cvat-api.md §1.1-1.2): page size 10 by default, ``page_size=all``, absolute
``next``/``previous`` URLs built from the request's host, 404 ``Invalid page.`` past the end,
default order ``-id``.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

from flask import Response, g, request

from . import jsonenc
from .errors import APIError, NotFound, ValidationError

CVAT_JSON = "application/vnd.cvat+json"


def now() -> str:
    """CVAT's timestamp format: ISO-8601 UTC, microseconds, ``Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def respond(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(jsonenc.dumps(obj), status=status, headers=headers, mimetype=CVAT_JSON)


def no_content() -> Response:
    return Response(status=204)


def body() -> Any:
    """The JSON request body; CVAT answers 400 for malformed JSON."""
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise APIError({"detail": f"JSON parse error - {e}"}, status=400)


def body_dict() -> dict:
    data = body()
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": ["Invalid data. Expected a dictionary, but got %s." % type(data).__name__]})
    return data


def base_url() -> str:
    """Absolute server root as the client reached it (``http://host:port``), no trailing slash."""
    return request.host_url.rstrip("/")


def abs_url(path: str, **query) -> str:
    q = {k: v for k, v in query.items() if v is not None}
    return base_url() + path + (("?" + urlencode(q)) if q else "")


def current_user() -> dict | None:
    return getattr(g, "user", None)


def org_context():
    """The request's organization context (``models.orgs.OrgContext``), resolved once per
    request from ``X-Organization`` / ``org`` / ``org_id``; raises CVAT's 400/404."""
    ctx = getattr(g, "org_ctx", None)
    if ctx is None:
        from flask import current_app
        from .models import orgs  # models import this module: resolve lazily
        ctx = g.org_ctx = orgs.resolve(current_app.config["STORE"], request.headers.get("X-Organization"),
                                       request.args.get("org"), request.args.get("org_id"))
    return ctx


def query_int(name: str, default: int | None = None) -> int | None:
    v = request.args.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ValidationError({name: ["A valid integer is required."]})


def query_bool(name: str, default: bool = False) -> bool:
    """Query booleans arrive Python-formatted from the SDK (``True``/``False``) or lower-case."""
    v = request.args.get(name)
    if v is None:
        return default
    return v.strip().lower() in ("1", "true", "yes", "on")


# ---- lists --------------------------------------------------------------------------------

def list_response(
    rows: Iterable[dict],
    serialize: Callable[[dict], dict],
    *,
    fields: Callable[[dict], dict] | None = None,
    simple_filters: Iterable[str] = (),
    search_fields: Iterable[str] = (),
    default_sort: str = "-id",
) -> Response:
    """Filter, sort and paginate ``rows`` as CVAT does; ``fields(row)`` gives the values the
    filters and sort see (e.g. ``assignee`` as a username)."""
    rows = list(rows)
    view = [(fields(r) if fields else r, r) for r in rows]
    args = request.args

    for name in simple_filters:
        if name in args:
            want = args[name]
            view = [(f, r) for f, r in view if _str(f.get(name)) == want]

    term = args.get("search")
    if term and search_fields:
        terms = [t for t in term.replace(",", " ").split() if t]
        view = [(f, r) for f, r in view
                if all(any(t.lower() in _str(f.get(s)).lower() for s in search_fields) for t in terms)]

    flt = args.get("filter")
    if flt:
        try:
            expr = json.loads(flt)
        except ValueError:
            raise ValidationError({"filter": ["filter must be a valid JSON-Logic expression"]})
        allowed = set(simple_filters) | set(search_fields) | {"id", "updated_date", "project_id", "task_id"}
        view = [(f, r) for f, r in view if _json_logic(expr, f, allowed)]

    sort = args.get("sort") or default_sort
    for key in reversed([k.strip() for k in sort.split(",") if k.strip()]):
        desc = key.startswith("-")
        name = key.lstrip("-")
        view.sort(key=lambda fr: _sort_key(fr[0].get(name)), reverse=desc)

    return respond(paginate([r for _, r in view], serialize))


def paginate(rows: list, serialize: Callable[[dict], dict]) -> dict:
    count = len(rows)
    size_arg = request.args.get("page_size")
    if size_arg == "all":
        size = max(count, 1)
    else:
        try:
            size = int(size_arg) if size_arg else 10
        except ValueError:
            size = 10
        if size <= 0:
            size = 10
    try:
        page = int(request.args.get("page", 1))
    except ValueError:
        raise NotFound("Invalid page.")
    pages = max(1, math.ceil(count / size))
    if page < 1 or page > pages:
        raise NotFound("Invalid page.")
    chunk = rows[(page - 1) * size: page * size]
    return {
        "count": count,
        "next": _page_url(page + 1) if page < pages else None,
        "previous": _page_url(page - 1) if page > 1 else None,
        "results": [serialize(r) for r in chunk],
    }


def _page_url(page: int) -> str:
    args = request.args.to_dict(flat=True)
    if page == 1:
        args.pop("page", None)
    else:
        args["page"] = str(page)
    return base_url() + request.path + (("?" + urlencode(args)) if args else "")


def _str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _sort_key(v: Any):
    if v is None:
        return (0, 0, "")
    if isinstance(v, (int, float)):
        return (1, v, "")
    return (2, 0, str(v))


def _json_logic(expr: Any, row: dict, allowed: set) -> Any:
    """The subset of JSON-Logic CVAT supports: and or ! !! == < <= > >= in var."""
    if not isinstance(expr, dict):
        return expr
    if len(expr) != 1:
        raise ValidationError({"filter": ["invalid filter expression"]})
    op, args = next(iter(expr.items()))
    if op == "var":
        name = args if isinstance(args, str) else args[0]
        if name not in allowed:
            raise ValidationError({"filter": [f"'{name}' is not a valid filter field"]})
        return row.get(name)
    if not isinstance(args, list):
        args = [args]
    vals = [_json_logic(a, row, allowed) for a in args]
    if op == "and":
        return all(vals)
    if op == "or":
        return any(vals)
    if op == "!":
        return not vals[0]
    if op == "!!":
        return bool(vals[0])
    if op == "==":
        return _str(vals[0]) == _str(vals[1]) if not isinstance(vals[0], type(vals[1])) else vals[0] == vals[1]
    if op == "in":
        hay = vals[1]
        return vals[0] in hay if hay is not None else False
    try:
        if op == "<":
            return vals[0] < vals[1] if len(vals) == 2 else vals[0] < vals[1] < vals[2]
        if op == "<=":
            return vals[0] <= vals[1] if len(vals) == 2 else vals[0] <= vals[1] <= vals[2]
        if op == ">":
            return vals[0] > vals[1]
        if op == ">=":
            return vals[0] >= vals[1]
    except TypeError:
        return False
    raise ValidationError({"filter": [f"unsupported filter operator '{op}'"]})
