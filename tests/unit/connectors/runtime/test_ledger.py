"""The sink ledger in memory: per partition, done and attempted, ranks, the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.runtime.ledger import SinkLedger
from schemas.ledger import LedgerEntry
from schemas.outcomes import Effect

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def entry(command_id: str, state: str = "done", *, at: datetime = NOW, **extra: object) -> LedgerEntry:
    return LedgerEntry(command_id=command_id, target="slack", state=state, at=at, **extra)  # type: ignore[arg-type]


def test_done_commands_keep_their_effect_and_clear_the_attempt() -> None:
    ledger = SinkLedger("slack")
    ledger.note(2, entry("c1", "attempted"))
    assert ledger.attempted(2, "c1") and ledger.done(2, "c1") is None
    ledger.note(2, entry("c1", effect=Effect(message_id="1.2")))
    done = ledger.done(2, "c1")
    assert done is not None and done.effect_model().message_id == "1.2"
    assert not ledger.attempted(2, "c1")
    assert ledger.done(3, "c1") is None  # partitions are separate


def test_the_highest_rank_done_per_coalesce_key_is_kept() -> None:
    ledger = SinkLedger("slack")
    ledger.note(0, entry("u5", coalesce_key="card:T|R", coalesce_rank=5))
    ledger.note(0, entry("u3", coalesce_key="card:T|R", coalesce_rank=3))
    assert ledger.rank_done(0, "card:T|R") == 5


def test_entries_older_than_the_window_expire() -> None:
    ledger = SinkLedger("slack", window_ms=3_600_000)
    ledger.note(0, entry("old", at=NOW - timedelta(hours=2)))
    ledger.note(0, entry("new", at=NOW))
    assert ledger.expire(int(NOW.timestamp() * 1000)) == 1
    assert ledger.done(0, "old") is None and ledger.done(0, "new") is not None


def test_loaded_entries_of_other_sinks_and_garbage_are_skipped() -> None:
    ledger = SinkLedger("slack")
    ours = b'{"data": {"command_id": "c1", "target": "slack", "state": "done", "at": "2026-12-02T12:00:00Z"}}'
    theirs = ours.replace(b'"slack"', b'"jira"').replace(b"c1", b"c2")
    for value in (ours, theirs, b"not json", b'{"data": 3}'):
        ledger._load_one(0, value, int(NOW.timestamp() * 1000))
    assert ledger.done(0, "c1") is not None and ledger.done(0, "c2") is None
