"""Reading the TOML text of ``syncd.toml``, accepting the multi-line inline tables of SPEC §3's
example (TOML 1.1) that Python 3.11's tomllib (TOML 1.0) refuses."""

from __future__ import annotations

import tomllib

from syncd.config_checks import CONFIG_NAME
from syncd.errors import ConfigError


def read_toml(text: str) -> dict:
    """The parsed table; the text is repaired by ``_join_inline_tables`` only when it does not
    parse as it is, and the error then names the original problem."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        try:
            return tomllib.loads(_join_inline_tables(text))
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"{CONFIG_NAME}: invalid TOML: {exc}") from None


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
