"""The small checkers every ``syncd.toml`` section uses. Each takes the dotted key for its
message, e.g. ``syncd.toml: rule[0].segment_size: must be a positive integer, got -3``; unknown
keys are rejected (typos would otherwise silently do nothing) and credential-like keys get a
hint to use the environment instead."""

from __future__ import annotations

from typing import Any

from syncd.errors import ConfigError


CONFIG_NAME = "syncd.toml"
_CREDENTIAL_KEYS = {"username", "user", "password", "passwd", "token", "api_key", "apikey",
                    "access_token", "email", "headers", "auth", "credentials", "secret"}
CRED_HINT = ("credentials are not allowed in syncd.toml; set CVAT_USERNAME and CVAT_PASSWORD, "
             "or CVAT_TOKEN, in the environment")


def fail(key: str, reason: str) -> ConfigError:
    return ConfigError(f"{CONFIG_NAME}: {key}: {reason}")


def show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_str(key, v, *, empty=True) -> str:
    if not isinstance(v, str):
        raise fail(key, f"must be a string, got {show(v)}")
    if not empty and not v.strip():
        raise fail(key, "must not be empty")
    return v


def check_bool(key, v) -> bool:
    if not isinstance(v, bool):
        raise fail(key, f"must be true or false, got {show(v)}")
    return v


def pos_int(key, v) -> int:
    if not is_int(v) or v <= 0:
        raise fail(key, f"must be a positive integer, got {show(v)}")
    return v


def number(key, v, *, positive) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (
            float("inf"), float("-inf")):
        raise fail(key, f"must be a number, got {show(v)}")
    if positive and v <= 0:
        raise fail(key, f"must be a positive number, got {show(v)}")
    if v < 0:
        raise fail(key, f"must not be negative, got {show(v)}")
    return float(v)


def str_list(key, v, *, allow_single=False) -> list[str]:
    if allow_single and isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise fail(key, f"must be a list of strings, got {show(v)}")
    for i, item in enumerate(v):
        check_str(f"{key}[{i}]", item, empty=False)
    return list(v)


def table(key, v) -> dict:
    if not isinstance(v, dict):
        raise fail(key, f"must be a table, got {show(v)}")
    return v


def no_unknown(key, table: dict, allowed) -> None:
    for k in table:
        where = f"{key}.{k}" if key else k
        if k.lower() in _CREDENTIAL_KEYS:
            raise fail(where, CRED_HINT)
        if k not in allowed:
            raise fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")
