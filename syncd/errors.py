"""Typed errors raised by syncd.

Every error carries a one-line message meant for a user: the CLI prints ``str(err)`` and exits
non-zero, so the message names the file/key and the reason, and never spans several lines.
"""


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""

    def __init__(self, message: str):
        # Collapse newlines: messages are printed as a single line by the CLI and logs.
        super().__init__(" ".join(str(message).split()))


class SampleFileError(SyncdError):
    """A sample file (``<media>.json``) or a path given for one is unusable."""


class ConfigError(SyncdError):
    """``syncd.toml`` is missing, malformed or holds a bad value."""


class RunError(SyncdError):
    """A run record is missing, duplicated or cannot be stored."""


class MediaError(SyncdError):
    """A media file (image, video, mask) cannot be read or written."""
