"""Server outage mid-loop: ``fakecvat serve --data-dir`` is stopped with kill -9 while the daemon
is uploading, stays down for a few seconds, and comes back on the same port with its state.
The daemon backs off and recovers on its own (no restart): every sample ends in exactly one
task with every drawn label exactly once."""
from __future__ import annotations

import time

import campaign


def test_daemon_recovers_on_its_own_after_cvat_outage(tmp_path):
    c = campaign.Campaign(tmp_path, 40, 1, seed=3, task_size=5, segment_size=3)
    try:
        c.annotator.start()
        d = c.start_daemon()
        # down in the middle of the upload: some tasks exist, not all
        campaign.wait_for(lambda: len(c.server.state().get("tasks", {})) >= 2, 60, 0.05,
                          "upload under way")
        c.server.kill()
        time.sleep(3)
        assert d.alive()
        c.server.start()
        c.wait_done(90, d)
        assert d.alive()  # recovered without a restart
        assert d.stop() == 0
        fig = c.check()
        text = c.daemon_log.read_text(errors="replace")
        fig.update(backoff_logged="CVAT unreachable" in text,
                   recovery_logged="CVAT reachable again" in text)
        campaign.print_figures("outage", fig)
        assert fig["problems"] == []
        assert fig["backoff_logged"] and fig["recovery_logged"]
    finally:
        c.close()
