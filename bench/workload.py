"""Every payload the benchmark sends, built with the schemas/ models, in this one module.

The contract is being reshaped (records become a family of kinds, topics may be renamed): when it
changes, this module is the only place of the bench that builds events, so it is the place to adapt.

The mix of a message workload (documented in bench/results.md too):

- a third of the messages mention no ticket, a third one ticket, a third two (chosen at random
  with a fixed seed, so runs are comparable);
- about 1 mention in 100 names a key that is not in the table (`UNKNOWN_SHARE`): the link flow
  asks the ticket's connector to fetch it and posts no card for it;
- messages come in threads of `MESSAGES_PER_THREAD`, spread over `CHANNELS` channels;
- texts are one or two sentences of a support conversation; with the envelope around them a
  message is 870-1,020 bytes of JSON (the envelope alone, with an empty text, is ~850).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from schemas import events
from schemas.commands import Command, PostCard, command_id_for
from schemas.envelope import Envelope
from schemas.records import RecordEvent, RecordRef, TicketRecord, version_of
from schemas.social import Author, SocialEvent, SocialMessage, ThreadRef
from schemas.topics import STREAM_PARTITIONS

SEED = 20251202
PROJECTS = ("SHOP", "PAY", "OPS", "CORE", "WEB", "API", "DATA", "INFRA", "MOB", "CRM")
MENTION_SYSTEM = "jira"
MENTION_REGEX = r"\b[A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,8}\b"
"""The project's default mention pattern (streams.mention_patterns); plain Faust uses it too."""
PLATFORM = "slack"
WORKSPACE = "T0BENCH001"
CHANNELS = 40
MESSAGES_PER_THREAD = 4
UNKNOWN_SHARE = 0.01
INPUT_PARTITIONS = STREAM_PARTITIONS
"""Partitions of every input (messages) topic of the bench, and of the output topics: the
catalog's count, which threadlink's streams need (their inputs are co-partitioned)."""
EPOCH = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)

_OPENERS = (
    "Customers in the EU cannot pay at checkout since the lunchtime deploy",
    "The nightly export to the warehouse stopped halfway through again",
    "Support is getting a wave of tickets about password resets not arriving",
    "Latency on the search endpoint doubled for the larger tenants this morning",
    "The mobile app crashes on start for some users after the latest release",
    "Invoices for the annual plans show the wrong tax rate for Austria",
    "Our status page says everything is fine but the dashboard loads forever",
    "A customer reports that attachments over ten megabytes silently fail",
)
_MIDDLES = (
    "we rolled back the feature flag but the error rate is still above normal",
    "the logs show timeouts from the payment provider every few minutes",
    "I can reproduce it with a fresh account in the staging workspace",
    "the on-call engineer is looking at the queue depth right now",
    "it only happens when the browser language is not English",
    "the retry job picked up most of them but a few hundred are stuck",
    "nothing changed on our side according to the deploy history",
    "the vendor confirmed an incident on their side an hour ago",
)
_CLOSERS = (
    "Can someone from the platform team take a look before the evening peak?",
    "Should we tell the account managers or wait for the next update?",
    "I will keep this thread updated with what we find.",
    "Please add anything you saw in your region as well.",
    "Let us decide in the stand-up whether this blocks the release.",
    "Thanks for jumping on this so quickly, everyone.",
)
_PEOPLE = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson")
_STATUSES = ("To Do", "In Progress", "In Review", "Blocked", "Done")
_PRIORITIES = ("Highest", "High", "Medium", "Low")

KEY_RE = re.compile(MENTION_REGEX)


def ticket_key(index: int) -> str:
    """The key of ticket number `index` (0-based): SHOP-1, PAY-1, ... OPS-10000, ..."""
    return f"{PROJECTS[index % len(PROJECTS)]}-{index // len(PROJECTS) + 1}"


def unknown_key(rng: random.Random) -> str:
    """A well-formed key no ticket table of the bench holds (numbers above 10^8)."""
    return f"{rng.choice(PROJECTS)}-{rng.randrange(100_000_000, 999_999_999)}"


def ticket(index: int) -> TicketRecord:
    key = ticket_key(index)
    project = key.split("-")[0]
    return TicketRecord(
        ref=RecordRef(system=MENTION_SYSTEM, key=key),
        title=f"{_OPENERS[index % len(_OPENERS)]} ({project.lower()} #{index})",
        status=_STATUSES[index % len(_STATUSES)],
        assignee=_PEOPLE[index % len(_PEOPLE)],
        priority=_PRIORITIES[index % len(_PRIORITIES)],
        project=project,
        url=f"https://acme.atlassian.net/browse/{key}",
        updated_at=EPOCH + timedelta(seconds=index),
        version=version_of(EPOCH + timedelta(seconds=index)),
        visibility="internal",
    )


def ticket_event(index: int) -> tuple[bytes, bytes]:
    """(key, value) of ticket `index` on the records topic, as the Jira connector publishes it."""
    record = ticket(index)
    envelope = Envelope[RecordEvent].wrap(
        record,
        type=events.RECORD_UPSERTED.format(kind=record.kind),
        source_system=MENTION_SYSTEM,
        subject=record.ref.id,
        id=f"{MENTION_SYSTEM}:bench-{index}",
        occurred_at=record.updated_at,
        visibility=record.visibility,
    )
    return record.ref.id.encode(), envelope.to_bytes()


def tickets(count: int) -> Iterator[tuple[bytes, bytes]]:
    for index in range(count):
        yield ticket_event(index)


def ticket_table(count: int) -> dict[str, dict[str, object]]:
    """What plain Faust keeps in memory: record id -> ticket, as JSON-ready dicts."""
    return {f"{MENTION_SYSTEM}:{ticket_key(i)}": ticket(i).model_dump(mode="json") for i in range(count)}


@dataclass(frozen=True)
class Message:
    """One social message of a workload, with what the bench needs to check the outputs."""

    index: int
    thread_id: str
    message_id: str
    key: bytes
    value: bytes
    known: tuple[str, ...]
    """Record ids of the mentioned tickets the table holds (each gives a card)."""
    mentions: int
    """Distinct keys in the text, known or not."""


def _text(rng: random.Random, keys: list[str]) -> str:
    """One or two sentences, like most chat messages (the envelope around it is ~850 bytes)."""
    said = rng.choice(_OPENERS) if rng.random() < 0.5 else rng.choice(_MIDDLES).capitalize()
    if not keys:
        return f"{said}. {rng.choice(_CLOSERS)}" if rng.random() < 0.3 else f"{said}."
    if len(keys) == 1:
        return f"{said}. Is this {keys[0]} again?"
    return f"{said}: {keys[0]} or {keys[1]}?"


def message(
    index: int,
    *,
    text: str,
    thread: ThreadRef,
    author: Author,
    known: tuple[str, ...] = (),
    mentions: int = 0,
    ts: float | None = None,
) -> Message:
    ts = ts if ts is not None else EPOCH.timestamp() + index * 0.25
    message_id = f"{ts:.6f}"
    # Slack's permalink format: a reply's link names its thread (connectors/slack/mapping.py).
    permalink = f"https://acme.slack.com/archives/{thread.channel}/p{message_id.replace('.', '')}"
    if message_id != thread.thread_id:
        permalink += f"?thread_ts={thread.thread_id}&cid={thread.channel}"
    msg = SocialMessage(
        thread=thread,
        message_id=message_id,
        author=author,
        text=text,
        permalink=permalink,
        channel_visibility="internal",
    )
    envelope = Envelope[SocialEvent].wrap(
        msg,
        type=events.SOCIAL_MESSAGE.format(action=msg.action),
        source_system=PLATFORM,
        subject=thread.id,
        id=f"{PLATFORM}:Ev{index:010d}",
        occurred_at=datetime.fromtimestamp(ts, UTC),
        visibility=msg.channel_visibility,
    )
    return Message(index, thread.id, message_id, thread.id.encode(), envelope.to_bytes(), known, mentions)


def messages(count: int, tickets_known: int, *, seed: int = SEED) -> Iterator[Message]:
    """`count` messages mentioning tickets 0..tickets_known-1 (the mix in the module doc)."""
    rng = random.Random(seed)
    for index in range(count):
        thread_no = index // MESSAGES_PER_THREAD
        root_ts = EPOCH.timestamp() + thread_no * MESSAGES_PER_THREAD * 0.25  # the thread's first message
        thread = ThreadRef(
            platform=PLATFORM,
            workspace=WORKSPACE,
            channel=f"C0BENCH{thread_no % CHANNELS:04d}",
            thread_id=f"{root_ts:.6f}",
        )
        keys: list[str] = []
        known: list[str] = []
        for _ in range(rng.randrange(3)):
            if tickets_known and rng.random() >= UNKNOWN_SHARE:
                key = ticket_key(rng.randrange(tickets_known))
                known.append(f"{MENTION_SYSTEM}:{key}")
            else:
                key = unknown_key(rng)
            if key not in keys:
                keys.append(key)
        person = _PEOPLE[index % len(_PEOPLE)]
        author = Author(id=f"U0BENCH{index % 97:04d}", display_name=person)
        yield message(
            index,
            text=_text(rng, keys),
            thread=thread,
            author=author,
            known=tuple(dict.fromkeys(known)),
            mentions=len(keys),
        )


def sentinel(tag: str, ticket_index: int = 0) -> Message:
    """A message in a thread of its own that mentions ticket `ticket_index`: its card shows the
    worker serves (the table holds that ticket and the agents run)."""
    thread = ThreadRef(platform=PLATFORM, workspace=WORKSPACE, channel="C0BENCHSENT", thread_id=f"sentinel-{tag}")
    key = ticket_key(ticket_index)
    return message(
        0,
        text=f"Sentinel {tag}: is {key} still open?",
        thread=thread,
        author=Author(id="U0BENCHSENT", display_name="bench"),
        known=(f"{MENTION_SYSTEM}:{key}",),
        mentions=1,
        ts=EPOCH.timestamp() - 86_400,  # no workload message has this id
    )


def describe(workload: list[Message], tickets_known: int) -> dict[str, Any]:
    """The mix of a message workload, for the results."""
    sizes = sorted(len(m.value) for m in workload)
    by_mentions = {str(n): sum(1 for m in workload if m.mentions == n) for n in range(3)}
    mentions = sum(m.mentions for m in workload)
    known = sum(len(m.known) for m in workload)
    ticket_sizes = sorted(len(ticket_event(i)[1]) for i in range(min(tickets_known, 1000)))
    return {
        "messages": len(workload),
        "messages_by_mentions": by_mentions,
        "mentions": mentions,
        "mentions_unknown": mentions - known,
        "cards_expected": len({(m.thread_id, r) for m in workload for r in m.known}),
        "threads": len({m.thread_id for m in workload}),
        "message_bytes": {"min": sizes[0], "median": sizes[len(sizes) // 2], "max": sizes[-1]} if sizes else {},
        "ticket_bytes": {
            "min": ticket_sizes[0],
            "median": ticket_sizes[len(ticket_sizes) // 2],
            "max": ticket_sizes[-1],
        }
        if ticket_sizes
        else {},
        "seed": SEED,
    }


def payload_sample(count: int = 1000) -> list[bytes]:
    """Message envelopes for the broker's own tools (one JSON document a line)."""
    return [m.value for m in messages(count, tickets_known=100_000, seed=SEED + 1)]


# --------------------------------------------------------------------------- sinks and webhooks
# The sink steps preload the commands a link flow would send; the latency step posts what Slack
# would deliver to the events webhook. Channels are the ones the fake Slack has (bench/fakeslack.py).


def slack_channel(index: int) -> str:
    return f"C0SINK{index:04d}"


def slack_thread(channel: int, thread: int) -> ThreadRef:
    """Thread number `thread` of channel number `channel`; its root's ts is made up, unique."""
    root_ts = EPOCH.timestamp() + channel * 10_000 + thread
    return ThreadRef(platform=PLATFORM, workspace=WORKSPACE, channel=slack_channel(channel), thread_id=f"{root_ts:.6f}")


def post_card(thread: ThreadRef, ticket_index: int, *, generation: int = 0) -> tuple[bytes, bytes]:
    """(key, value) of the PostCard command the link flow sends for ticket `ticket_index` in
    `thread` (keyed by thread id, like streams/flows/link.py)."""
    record = ticket(ticket_index)
    command = PostCard(
        command_id=command_id_for("post_card", thread.id, record.ref.id, generation),
        target=PLATFORM,
        reply_key=record.ref.id,
        destination=thread,
        record=record,
        in_reply_to=f"{float(thread.thread_id) + 0.5:.6f}",
    )
    envelope = Envelope[Command].wrap(
        command,
        type=events.COMMAND.format(kind=command.kind),
        source_system="streams",
        subject=thread.id,
        id=command.command_id,
        visibility=record.visibility,
    )
    return thread.id.encode(), envelope.to_bytes()


def slack_event_ts(index: int) -> str:
    """The ts of event `index`'s message: unique, after every thread's root."""
    return f"{EPOCH.timestamp() + 3_000_000 + index * 0.001:.6f}"


def slack_event_body(thread: ThreadRef, index: int, text: str, *, team: str = WORKSPACE) -> bytes:
    """An Events API `event_callback` for a user's reply in `thread`, as Slack POSTs it (the
    caller signs it); `index` makes its ids unique."""
    ts = slack_event_ts(index)
    payload = {
        "token": "bench-verification-token",
        "team_id": team,
        "api_app_id": "A0BENCHAPP",
        "type": "event_callback",
        "event_id": f"Ev0BENCH{index:010d}",
        "event_time": int(EPOCH.timestamp()),
        "event": {
            "type": "message",
            "channel": thread.channel,
            "channel_type": "channel",
            "user": f"U0BENCH{index % 97:04d}",
            "text": text,
            "ts": ts,
            "thread_ts": thread.thread_id,
            "event_ts": ts,
            "team": team,
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- outputs
# What each flow under test writes per input message, read back to tell which message it was for.

COMMAND = TypeAdapter(Envelope[Command])


def card_reply_to(value: bytes) -> str | None:
    """threadlink's link flow: a PostCard command names the message it answers."""
    data = COMMAND.validate_json(value).data
    return data.in_reply_to if isinstance(data, PostCard) else None


def plain_card(message: dict[str, Any], ticket: dict[str, Any]) -> dict[str, Any]:
    """Plain Faust's card for a ticket hit (the obvious way: a dict, serialized by Faust as JSON)."""
    return {"thread": message["thread"], "in_reply_to": message["message_id"], "record": ticket}


def plain_card_reply_to(value: bytes) -> str | None:
    return json.loads(value).get("in_reply_to")


def passthrough_reply_to(value: bytes) -> str | None:
    """A pass-through copies the message's envelope."""
    return json.loads(value)["data"]["message_id"]
