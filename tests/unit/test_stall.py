"""`onnxvec status` says why work stalls, from the counts alone."""

from __future__ import annotations

from onnxvec.ingest import register


def test_status_says_why_work_stalls() -> None:
    def counts(pending: int, done_last_minute: int = 0) -> dict:
        return {"documents": {"pending": pending}, "done_last_minute": done_last_minute}

    def claims(live: int = 0, lapsed: int = 0, waited: float = 60) -> dict:
        return {"live_claims": live, "lapsed_claims": lapsed, "oldest_pending_seconds": waited}

    assert register.stall(counts(0), claims(), 0, 5) is None  # nothing to do
    assert register.stall(counts(9), claims(live=8), 0, 5) is None  # a worker is on it
    assert register.stall(counts(9, done_last_minute=30), claims(), 0, 5) is None  # moving
    assert register.stall(counts(9), claims(waited=2), 0, 5) is None  # just registered
    assert "no worker takes them" in register.stall(counts(9), claims(), 3, 5)
    assert "is a worker running" in register.stall(counts(9), claims(), 0, 5)
    assert "3 claims lapsed" in register.stall(counts(0), claims(lapsed=3), 0, 5)
