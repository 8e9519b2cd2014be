"""Fault campaign: the daemon runs the whole loop for 200 samples (images and a video) while
fakecvat injects faults into about 20% of CVAT calls (500, 502/503 with and without Retry-After,
429, slow answers past the client timeout, connections dropped mid-upload and mid-download,
writes that succeed on the server while the client sees a timeout or a dropped answer).

Proves: every tagged sample ends in exactly one task, every drawn label arrives exactly once,
no sample file is corrupt or lost a key. Prints the figures (``pytest -s``). Seeded; the long
form is ``python tools/campaign.py faults``."""
from __future__ import annotations

import campaign


def test_fault_campaign_loses_and_duplicates_nothing(tmp_path):
    fig = campaign.run_faults(tmp_path, samples=200, videos=1, seed=7, fraction=0.2,
                              timeout=1.0, deadline=150)
    campaign.print_figures("fault campaign", fig)
    assert fig["faults"] > 0.1 * fig["calls"], fig
    assert fig["problems"] == []
    assert fig["duplicates"] == 0 and fig["lost"] == 0
    assert fig["duplicate_tasks"] == 0 and fig["missing_tasks"] == 0 and fig["empty_tasks"] == 0
    assert fig["labels_found"] == fig["labels_expected"] > 200
