"""The serving path under steady load for 30 s (``tests/soak.py``; ``tests/bench/soak.py`` runs it for 10 minutes)."""

from pathlib import Path

import pytest

from tests.soak import register_versions, run_soak

pytestmark = pytest.mark.integration


def test_the_splitter_and_two_servers_answer_every_request_log_every_event_and_hold_their_memory(
    data_dir: Path, tmp_path: Path
) -> None:
    tracking_uri = register_versions(tmp_path, data_dir)
    report = run_soak(tmp_path, data_dir, tracking_uri, seconds=30, concurrency=4, rate_per_s=80, sample_s=1.5)
    summary = report.to_dict()
    assert report.sent > 1000 and report.failed == 0, summary
    for version in ("1", "2"):
        variant = report.variants[version]
        assert variant["errors"] == 0 and variant["requests"] > report.sent / 4, summary
        # Every answered request was logged as a request and a response event: sent, or dropped and counted.
        events = report.log_events[f"v{version}"]
        assert events["sent"] + events["dropped"] + events["failed"] == 2 * variant["requests"], summary
        assert events["failed"] == 0, summary
    assert all(0 <= depth <= 10_000 for depth in report.queue_max.values()), summary  # the logger's capacity
    assert report.monitor_received == sum(e["sent"] for e in report.log_events.values()), summary
    for name in report.rss_mb:
        assert report.rss_growth_mb(name) < 25, summary  # a leak of 10 kB a request would add about 25 MB
