"""``<root>/syncd.toml`` (SPEC §3) -> typed, validated dataclasses.

Every problem is a ConfigError naming the key and the reason, e.g.
``syncd.toml: rule[0].segment_size: must be a positive integer, got -3``. Unknown keys are
rejected (typos would otherwise silently do nothing). Credentials never live in the file: they
come from the environment (``credentials_from_env``). The label schema is checked for its TOML
shape only; ``syncd.schema`` gives it meaning.

The work is split by section: :mod:`syncd.config_toml` (reading the TOML),
:mod:`syncd.config_checks` (shared checkers), :mod:`syncd.config_cvat` (``[cvat]``),
:mod:`syncd.config_rules` (``[[rule]]``) and :mod:`syncd.config_label_schema` (a rule's labels).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from syncd.config_checks import CONFIG_NAME, fail, no_unknown, table
from syncd.config_cvat import CvatConfig, parse_cvat
from syncd.config_rules import Rule, parse_rule
from syncd.config_toml import read_toml
from syncd.errors import ConfigError

__all__ = ["CONFIG_NAME", "Config", "CvatConfig", "Rule", "credentials_from_env", "load_config", "parse_config"]


@dataclass(frozen=True)
class Config:
    cvat: CvatConfig
    rules: list[Rule]
    path: Path | None = None


def parse_config(text: str, *, root=None, env: Mapping[str, str] | None = None) -> Config:
    """Validate the text of a syncd.toml (``root`` resolves a relative share_root)."""
    env = os.environ if env is None else env
    root = Path(root) if root is not None else None
    data = read_toml(text)
    no_unknown("", data, {"cvat", "rule"})
    cvat = parse_cvat(table("cvat", data.get("cvat", {})), root, env)
    rules_data = data.get("rule")
    if not isinstance(rules_data, list) or not rules_data:
        raise fail("rule", "at least one [[rule]] table is required")
    rules = [parse_rule(i, r, bool(cvat.project_name)) for i, r in enumerate(rules_data)]
    names: dict[str, int] = {}
    tags: dict[str, str] = {}
    for i, r in enumerate(rules):
        if r.name in names:
            raise fail(f"rule[{i}].name", f"{r.name!r} is already used by rule[{names[r.name]}]")
        names[r.name] = i
        if r.tag in tags:
            raise fail(f"rule[{i}].tag", f"{r.tag!r} is already the trigger tag of rule "
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
