"""``<root>/syncd.toml`` (SPEC §3) -> typed, validated dataclasses.

Every problem is a ConfigError naming the key and the reason, e.g.
``syncd.toml: rule[0].segment_size: must be a positive integer, got -3``. Unknown keys are
rejected (typos would otherwise silently do nothing). Credentials never live in the file: they
come from the environment (``credentials_from_env``). The label schema is checked for its TOML
shape only; ``syncd.schema`` gives it meaning.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from syncd.errors import ConfigError

CONFIG_NAME = "syncd.toml"
COMPLETION_MODES = ("completed", "acceptance")
LABEL_TYPES = ("classification", "classifications", "detection", "detections", "instance",
               "instances", "polyline", "polylines", "polygon", "polygons", "keypoint",
               "keypoints", "segmentation", "scalar")
ALLOW_FLAGS = ("allow_additions", "allow_deletions", "allow_label_edits", "allow_index_edits",
               "allow_spatial_edits")
_CREDENTIAL_KEYS = {"username", "user", "password", "passwd", "token", "api_key", "apikey",
                    "access_token", "email", "headers", "auth", "credentials", "secret"}
_CRED_HINT = ("credentials are not allowed in syncd.toml; set CVAT_USERNAME and CVAT_PASSWORD, "
              "or CVAT_TOKEN, in the environment")
_SCHEMA_FIELD_KEYS = {"type", "classes", "attributes", "mask_targets", "existing_field",
                      "only_keyframes", "occluded_attr", "group_id_attr", *ALLOW_FLAGS}
_ATTRIBUTE_KEYS = {"type", "values", "default", "mutable", "read_only"}
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,63}$")
_MASK_KEY = re.compile(r"^(\d+|#[0-9A-Fa-f]{6})$")


@dataclass(frozen=True)
class CvatConfig:
    url: str
    organization: str = ""
    project_name: str = ""
    poll_interval: float = 10.0
    webhook: tuple[str, int] | None = None   # (host, port); port 0 = any free port
    share_root: Path | None = None            # absolute local path of CVAT's share volume
    completion: str = "completed"             # task done when "completed", or on "acceptance"


@dataclass(frozen=True)
class Rule:
    name: str
    tag: str = "requires_annotation"
    done_tag: str = "annotated"
    auto_tag: tuple[str, ...] = ()
    label_schema: dict | None = None
    label_field: str | None = None
    label_type: str | None = None
    classes: list | None = None
    attributes: Any = True
    mask_targets: dict | None = None
    segment_size: int | None = None
    task_size: int | None = None
    batch_window: float = 5.0
    task_assignee: str | list[str] | None = None
    job_assignees: list[str] = field(default_factory=list)
    job_reviewers: list[str] = field(default_factory=list)
    allow_additions: bool = True
    allow_deletions: bool = True
    allow_label_edits: bool = True
    allow_index_edits: bool = True
    allow_spatial_edits: bool = True
    cleanup: bool = False   # deleting annotation work is irreversible: opt in
    frame_start: int | list[int] | dict[str, int] | None = None
    frame_stop: int | list[int] | dict[str, int] | None = None
    frame_step: int | list[int] | dict[str, int] | None = None


@dataclass(frozen=True)
class Config:
    cvat: CvatConfig
    rules: list[Rule]
    path: Path | None = None


# ---------------------------------------------------------------------------------------------
# Small checkers: each takes the dotted key for the message


def _fail(key: str, reason: str) -> ConfigError:
    return ConfigError(f"{CONFIG_NAME}: {key}: {reason}")


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str(key, v, *, empty=True) -> str:
    if not isinstance(v, str):
        raise _fail(key, f"must be a string, got {_show(v)}")
    if not empty and not v.strip():
        raise _fail(key, "must not be empty")
    return v


def _bool(key, v) -> bool:
    if not isinstance(v, bool):
        raise _fail(key, f"must be true or false, got {_show(v)}")
    return v


def _pos_int(key, v) -> int:
    if not _is_int(v) or v <= 0:
        raise _fail(key, f"must be a positive integer, got {_show(v)}")
    return v


def _number(key, v, *, positive) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (
            float("inf"), float("-inf")):
        raise _fail(key, f"must be a number, got {_show(v)}")
    if positive and v <= 0:
        raise _fail(key, f"must be a positive number, got {_show(v)}")
    if v < 0:
        raise _fail(key, f"must not be negative, got {_show(v)}")
    return float(v)


def _str_list(key, v, *, allow_single=False) -> list[str]:
    if allow_single and isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise _fail(key, f"must be a list of strings, got {_show(v)}")
    for i, item in enumerate(v):
        _str(f"{key}[{i}]", item, empty=False)
    return list(v)


def _table(key, v) -> dict:
    if not isinstance(v, dict):
        raise _fail(key, f"must be a table, got {_show(v)}")
    return v


def _no_unknown(key, table: dict, allowed) -> None:
    for k in table:
        where = f"{key}.{k}" if key else k
        if k.lower() in _CREDENTIAL_KEYS:
            raise _fail(where, _CRED_HINT)
        if k not in allowed:
            raise _fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")


# ---------------------------------------------------------------------------------------------
# [cvat]


def _url(key, v) -> str:
    v = _str(key, v, empty=False).strip()
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(key, f"must be an http:// or https:// URL, got {v!r}")
    if parts.username or parts.password:
        raise _fail(key, _CRED_HINT)
    return v.rstrip("/")


def _webhook(key, v) -> tuple[str, int] | None:
    v = _str(key, v).strip()
    if not v:
        return None
    host, sep, port = v.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise _fail(key, f"must be HOST:PORT (port 0..65535), got {v!r}")
    return host, int(port)


def _cvat(data: dict, root: Path | None, env: Mapping[str, str]) -> CvatConfig:
    key = "cvat"
    _no_unknown(key, data, {"url", "organization", "project_name", "poll_interval", "webhook",
                            "share_root", "completion"})
    env_url = env.get("CVAT_URL") or None
    if env_url:
        url = _url("env CVAT_URL", env_url)
    elif "url" in data:
        url = _url("cvat.url", data["url"])
    elif env.get("FIFTYONE_CVAT_URL"):
        url = _url("env FIFTYONE_CVAT_URL", env["FIFTYONE_CVAT_URL"])
    else:
        raise _fail("cvat.url", "missing: set it in syncd.toml or in env CVAT_URL")
    share = _str("cvat.share_root", data.get("share_root", "")).strip()
    share_root = None
    if share:
        share_root = Path(share).expanduser()
        if not share_root.is_absolute():
            share_root = (root or Path.cwd()) / share_root
        if not share_root.is_dir():
            raise _fail("cvat.share_root", f"not a directory: {share_root}")
        share_root = share_root.resolve()
    completion = _str("cvat.completion", data.get("completion", "completed"))
    if completion not in COMPLETION_MODES:
        raise _fail("cvat.completion",
                    f"must be one of {', '.join(COMPLETION_MODES)}, got {completion!r}")
    return CvatConfig(
        url=url,
        organization=_str("cvat.organization", data.get("organization", "")).strip(),
        project_name=_str("cvat.project_name", data.get("project_name", "")).strip(),
        poll_interval=_number("cvat.poll_interval", data.get("poll_interval", 10),
                              positive=True),
        webhook=_webhook("cvat.webhook", data.get("webhook", "")),
        share_root=share_root,
        completion=completion,
    )


# ---------------------------------------------------------------------------------------------
# label schema shape


def _attributes(key, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (str, list)):
        return _str_list(key, v, allow_single=True)
    for name, spec in _table(key, v).items():
        akey = f"{key}.{name}"
        _no_unknown(akey, _table(akey, spec), _ATTRIBUTE_KEYS)
        if "type" in spec:
            _str(f"{akey}.type", spec["type"], empty=False)
        if "values" in spec and not isinstance(spec["values"], list):
            raise _fail(f"{akey}.values", f"must be a list, got {_show(spec['values'])}")
        for flag in ("mutable", "read_only"):
            if flag in spec:
                _bool(f"{akey}.{flag}", spec[flag])
    return v


def _classes(key, v) -> list:
    if not isinstance(v, list):
        raise _fail(key, f"must be a list, got {_show(v)}")
    for i, item in enumerate(v):
        ikey = f"{key}[{i}]"
        if isinstance(item, dict):  # {classes = [...], attributes = {...}}
            _no_unknown(ikey, item, {"classes", "attributes"})
            if "classes" not in item:
                raise _fail(f"{ikey}.classes", "missing")
            _str_list(f"{ikey}.classes", item["classes"])
            if "attributes" in item:
                _attributes(f"{ikey}.attributes", item["attributes"])
        else:
            _str(ikey, item, empty=False)
    return v


def _mask_targets(key, v) -> dict:
    for k, name in _table(key, v).items():
        if not _MASK_KEY.match(k):
            raise _fail(f"{key}.{k}", "keys must be pixel values (\"1\") or colors (\"#ff0000\")")
        _str(f"{key}.{k}", name)
    return v


def _label_type(key, v) -> str:
    v = _str(key, v, empty=False)
    if v not in LABEL_TYPES:
        raise _fail(key, f"unknown label type {v!r} (one of: {', '.join(LABEL_TYPES)})")
    return v


def _label_schema(key, v) -> dict:
    if isinstance(v, list):  # FiftyOne also takes a list of field names
        v = {name: {} for name in _str_list(key, v)}
    if not _table(key, v):
        raise _fail(key, "must name at least one label field")
    for name, spec in v.items():
        fkey = f"{key}.{name}"
        if not name.strip():
            raise _fail(fkey, "empty field name")
        _no_unknown(fkey, _table(fkey, spec), _SCHEMA_FIELD_KEYS)
        checks = {"type": _label_type, "classes": _classes, "attributes": _attributes,
                  "mask_targets": _mask_targets, "existing_field": _bool,
                  "only_keyframes": _bool, "occluded_attr": _str, "group_id_attr": _str,
                  **{flag: _bool for flag in ALLOW_FLAGS}}
        for k, check in checks.items():
            if k in spec:
                check(f"{fkey}.{k}", spec[k])
    return v


# ---------------------------------------------------------------------------------------------
# [[rule]]


def _frames(key, v, minimum):
    def one(k, x):
        if not _is_int(x) or x < minimum:
            raise _fail(k, f"must be an integer >= {minimum}, got {_show(x)}")
        return x

    if isinstance(v, list):
        if not v:
            raise _fail(key, "must not be an empty list")
        return [one(f"{key}[{i}]", x) for i, x in enumerate(v)]
    if isinstance(v, dict):
        return {p: one(f"{key}.{p}", x) for p, x in v.items()}
    return one(key, v)


def _rule(i: int, data: dict, has_project: bool) -> Rule:
    key = f"rule[{i}]"
    allowed = {f.name for f in Rule.__dataclass_fields__.values()}
    _no_unknown(key, _table(key, data), allowed)
    if "name" not in data:
        raise _fail(f"{key}.name", "missing (run keys are '<name>-<n>')")
    name = _str(f"{key}.name", data["name"], empty=False)
    if not _RULE_NAME.match(name):
        raise _fail(f"{key}.name", f"use letters, digits and '_' (at most 64), got {name!r}")
    key = f"rule[{i}]"
    out: dict[str, Any] = {"name": name}
    for k in ("tag", "done_tag"):
        if k in data:
            out[k] = _str(f"{key}.{k}", data[k], empty=False)
    if "auto_tag" in data:
        out["auto_tag"] = tuple(_str_list(f"{key}.auto_tag", data["auto_tag"], allow_single=True))
    if "label_schema" in data:
        out["label_schema"] = _label_schema(f"{key}.label_schema", data["label_schema"])
    if "label_field" in data:
        out["label_field"] = _str(f"{key}.label_field", data["label_field"], empty=False)
    if "label_type" in data:
        out["label_type"] = _label_type(f"{key}.label_type", data["label_type"])
    if "classes" in data:
        out["classes"] = _classes(f"{key}.classes", data["classes"])
    if "attributes" in data:
        out["attributes"] = _attributes(f"{key}.attributes", data["attributes"])
    if "mask_targets" in data:
        out["mask_targets"] = _mask_targets(f"{key}.mask_targets", data["mask_targets"])
    for k in ("segment_size", "task_size"):
        if k in data:
            out[k] = _pos_int(f"{key}.{k}", data[k])
    if "batch_window" in data:
        out["batch_window"] = _number(f"{key}.batch_window", data["batch_window"], positive=False)
    if "task_assignee" in data:
        v = data["task_assignee"]
        out["task_assignee"] = (_str(f"{key}.task_assignee", v, empty=False) if isinstance(v, str)
                                else _str_list(f"{key}.task_assignee", v))
    for k in ("job_assignees", "job_reviewers"):
        if k in data:
            out[k] = _str_list(f"{key}.{k}", data[k], allow_single=True)
    for k in (*ALLOW_FLAGS, "cleanup"):
        if k in data:
            out[k] = _bool(f"{key}.{k}", data[k])
    for k, minimum in (("frame_start", 0), ("frame_stop", 0), ("frame_step", 1)):
        if k in data:
            out[k] = _frames(f"{key}.{k}", data[k], minimum)
    rule = Rule(**out)
    if rule.tag == rule.done_tag:
        raise _fail(f"{key}.done_tag", f"must differ from the trigger tag {rule.tag!r}")
    if rule.label_schema is None and rule.label_field is None and not has_project:
        raise _fail(key, "needs label_schema, or label_field (with label_type and classes)")
    return rule


# ---------------------------------------------------------------------------------------------
# entry points


def _join_inline_tables(text: str) -> str:
    """Rewrite TOML 1.1 multi-line inline tables (as in SPEC §3's example) into TOML 1.0.

    Python 3.11's tomllib is TOML 1.0: an inline table must fit on one line and has no trailing
    comma. Inside ``{...}`` this joins lines, drops comments and trailing commas; strings are
    copied untouched. Only used as a fallback when the text does not parse as it is.
    """
    out: list[str] = []
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and text[j:j + len(quote)] != quote:
                j += 2 if (quote[0] == '"' and text[j] == "\\") else 1
            j += len(quote)
            out.append(text[i:j])
            i = j
            continue
        if c == "#" and depth > 0:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(text[i:j])
            i = j
            continue
        if c == "{":
            depth += 1
        elif c == "}" and depth > 0:
            depth -= 1
            while out and out[-1].isspace():
                out.pop()
            if out and out[-1] == ",":
                out.pop()
        elif c == "\n" and depth > 0:
            c = " "
        out.append(c)
        i += 1
    return "".join(out)


def parse_config(text: str, *, root=None, env: Mapping[str, str] | None = None) -> Config:
    """Validate the text of a syncd.toml (``root`` resolves a relative share_root)."""
    env = os.environ if env is None else env
    root = Path(root) if root is not None else None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        try:
            data = tomllib.loads(_join_inline_tables(text))
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"{CONFIG_NAME}: invalid TOML: {exc}") from None
    _no_unknown("", data, {"cvat", "rule"})
    cvat = _cvat(_table("cvat", data.get("cvat", {})), root, env)
    rules_data = data.get("rule")
    if not isinstance(rules_data, list) or not rules_data:
        raise _fail("rule", "at least one [[rule]] table is required")
    rules = [_rule(i, r, bool(cvat.project_name)) for i, r in enumerate(rules_data)]
    names: dict[str, int] = {}
    tags: dict[str, str] = {}
    for i, r in enumerate(rules):
        if r.name in names:
            raise _fail(f"rule[{i}].name", f"{r.name!r} is already used by rule[{names[r.name]}]")
        names[r.name] = i
        if r.tag in tags:
            raise _fail(f"rule[{i}].tag", f"{r.tag!r} is already the trigger tag of rule "
                                          f"{tags[r.tag]!r}")
        tags[r.tag] = r.name
    return Config(cvat=cvat, rules=rules)


def load_config(root, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``<root>/syncd.toml``; refuses a world-writable file."""
    path = Path(root) / CONFIG_NAME
    try:
        st = path.stat()
        if st.st_mode & stat.S_IWOTH:
            raise ConfigError(f"{path}: is world-writable (mode {st.st_mode & 0o777:o}); "
                              f"run: chmod o-w {path}")
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no {CONFIG_NAME} in {root}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    cfg = parse_config(text, root=root, env=env)
    return Config(cvat=cfg.cvat, rules=cfg.rules, path=path)


def credentials_from_env(env: Mapping[str, str] | None = None):
    """(url, username, password, token) from the environment; None where unset.

    ``CVAT_*`` wins over ``FIFTYONE_CVAT_*`` (the variables FiftyOne's integration reads).
    """
    env = os.environ if env is None else env

    def pick(*names):
        for n in names:
            if env.get(n):
                return env[n]
        return None

    return (pick("CVAT_URL", "FIFTYONE_CVAT_URL"),
            pick("CVAT_USERNAME", "FIFTYONE_CVAT_USERNAME"),
            pick("CVAT_PASSWORD", "FIFTYONE_CVAT_PASSWORD"),
            pick("CVAT_TOKEN"))
