"""Survives faults: 1,000 onboarding messages through the broker and the local host while 20% of ARM
calls and 5% of token requests fail, Table Storage goes down for a while, and the host restarts."""

from __future__ import annotations

from pathlib import Path

from sandbox.programs.soak import run_soak


async def test_thousand_messages_under_faults_lose_nothing_and_double_nothing(tmp_path: Path) -> None:
    report = await run_soak(1000, work=tmp_path, outage_seconds=3)
    print("\n" + "\n".join(report.lines()))  # the figures, with `pytest -s`

    assert report.faults_injected > 100
    assert report.azurite_outage_seconds == 3 and report.host_restarts == 1
    assert report.without_final_outcome == []
    assert report.with_several_final_outcomes == []
    assert report.duplicated_events == 0
    assert sum(report.outcomes.values()) == 1000
    assert set(report.outcomes) <= {"linked", "already-linked", "failed"}
    assert report.left_in_queue == {}
    # Dead-lettering is only for messages that kept failing to be scheduled; none do here.
    assert report.dead_lettered == []
