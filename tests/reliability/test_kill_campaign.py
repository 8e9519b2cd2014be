"""Kill campaign: ``syncd run`` is killed with SIGKILL at 100 random instants across the whole
loop (start-up, planning, task creation, upload, label upload, job assignment, polling,
download, merge), restarted each time, then left to finish. Same invariants as the fault
campaign: one task per sample, every drawn label exactly once, no sample file corrupt or short
of a key. The long mode (1000 kills) is ``python tools/campaign.py kills --kills 1000``."""
from __future__ import annotations

import campaign
import kills


def test_kill_campaign_loses_and_duplicates_nothing(tmp_path):
    fig = kills.run_kills(tmp_path, samples=120, videos=1, kills=100, seed=11,
                             max_life=0.5, deadline=90)
    campaign.print_figures("kill campaign", fig)
    assert fig["problems"] == []
    assert fig["duplicates"] == 0 and fig["lost"] == 0
    assert fig["duplicate_tasks"] == 0 and fig["missing_tasks"] == 0 and fig["empty_tasks"] == 0
    assert fig["labels_found"] == fig["labels_expected"] > 120
    # the kills were spread over the loop, not all before the first task
    assert fig["done_every_10_kills"][0] < 120 or fig["done_every_10_kills"][-1] > 0
