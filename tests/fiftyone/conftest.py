"""Fixtures for the FiftyOne interoperability tests: a CVAT annotator acting through fakecvat's
REST API, a throwaway FiftyOne dataset, and FiftyOne's settings for unattended runs.

FiftyOne is optional (the ``[fiftyone]`` extra); tests using the ``fo`` fixture skip when it is
missing.
Importing FiftyOne is slow (~3 s) and its first dataset starts a MongoDB (~5 s, shared by every
process of the machine through FiftyOne's own service), so all FiftyOne tests live in this
directory and carry ``xdist_group("fiftyone")``.
"""
from __future__ import annotations

import os
import uuid

import pytest

from fo_helpers import Annotator, connect_database, import_fiftyone

# Set before FiftyOne is imported anywhere: no usage tracking, no progress bars in the logs,
# and never an interactive credentials prompt (FiftyOne falls back to input() without them).
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
# The bundled MongoDB is the oldest FiftyOne supports; skip the version nag on every connect.
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


@pytest.fixture(scope="session")
def fo():
    """The ``fiftyone`` module, imported on first use (or the test skips). Not at module level:
    every xdist worker collects every module, and only the workers that run a FiftyOne test
    should pay for importing it."""
    return import_fiftyone()


@pytest.fixture
def annotator(fakecvat):
    """Draws and completes jobs on the test's (schema-checked) fakecvat as admin."""
    return Annotator(fakecvat.url)


@pytest.fixture
def fo_dataset(fo):
    """A fresh non-persistent FiftyOne dataset with a unique name, deleted afterwards."""
    connect_database()
    # A unique name: parallel workers (and other users of the machine) share one MongoDB.
    ds = fo.Dataset(f"syncd-test-{uuid.uuid4().hex}", persistent=False)
    try:
        yield ds
    finally:
        ds.delete()
