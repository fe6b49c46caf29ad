"""The doctor's report: failing is what sets the exit code, the first failure's
next step wins over a warning's, and times read as an on-call engineer reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridpilot.ops.doctor import Report, Status, ago

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def test_a_report_is_ok_with_warnings_and_not_with_a_failure() -> None:
    report = Report("site s1")
    report.add("database", Status.OK, "reachable")
    report.add("edge buffer", Status.WARN, "3 batches waiting", "wait for it to drain")
    assert report.ok
    assert report.next_step == "wait for it to drain"
    report.add("agent gw1", Status.FAIL, "agent gone since ...", "start the agent")
    report.add("newest sample", Status.FAIL, "10 min old", "docs/runbooks/no-data.md")
    assert not report.ok
    assert report.next_step == "start the agent"  # the first failure, not the warning
    body = report.as_json()
    assert body["ok"] is False and body["next_step"] == "start the agent"
    assert [f["status"] for f in body["findings"]] == ["ok", "warn", "fail", "fail"]


def test_an_all_ok_report_says_there_is_nothing_to_do() -> None:
    report = Report("deployment")
    report.add("database", Status.OK, "reachable")
    assert report.ok and report.next_step == "nothing: every check passed"


def test_ago_gives_the_time_and_how_long_ago_in_readable_units() -> None:
    assert ago(None, NOW) == "never"
    assert ago(NOW - timedelta(seconds=42), NOW) == "2026-12-06T06:59:18+00:00 (42 s ago)"
    assert ago(NOW - timedelta(minutes=30), NOW).endswith("(30 min ago)")
    assert ago(NOW - timedelta(hours=5), NOW).endswith("(5.0 h ago)")
    assert ago(NOW + timedelta(seconds=3), NOW).endswith("(0 s ago)")  # clock skew: never negative
