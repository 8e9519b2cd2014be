"""Kill campaign: ``syncd run`` is killed with SIGKILL 100 times, mostly aimed at moments when
work is in flight (batching, task creation, upload, job assignment, polling, loading), some
during start-up or at blind instants, restarted each time, then left to finish (see kills.py).
Same invariants as the fault campaign: one task per sample, every drawn label exactly once, no
sample file corrupt or short of a key. The long mode is ``python tools/campaign.py kills``."""
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
    # the kills landed while the daemon worked, not while it waited for samples
    assert fig["kills_active_share"] >= 0.6, fig["kills_by_phase"]
