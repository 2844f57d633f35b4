"""Reach's decisions, without Kafka: routing rules fire once per thread; a watched thread that
nobody answers widens its circle step by step until someone other than its author answers; the
notices never quote a thread in a wider place than its own; bots and threadlink start nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from schemas.commands import CreateTicket, PostMessage
from schemas.records import RecordRef
from schemas.social import Author, ChannelRef, SocialMessage, SocialReaction, ThreadLinked, ThreadRef, ThreadTimer
from schemas.subscriptions import Subscription
from streams.agents import watch_entry
from streams.flows.emit import Emit, Emitter
from streams.flows.escalate import Escalate
from streams.flows.reach import FIRST_ANSWER, ReachFlow
from streams.state import ThreadState
from streams.subscriptions import Subscriptions
from tests.unit.streams.flowkit import NAMES, T0, envelope
from threadlink.config import EscalateSettings, ReachSettings

pytestmark = pytest.mark.unit

LEADS = {"platform": "slack", "workspace": "T1", "channel": "CLEADS", "visibility": "internal"}
PUBLIC = {"platform": "slack", "workspace": "T1", "channel": "CPUBLIC", "visibility": "public"}
ALL_HANDS = {"platform": "slack", "workspace": "T1", "channel": "CALL", "visibility": "internal"}


class Thread:
    """One thread's state and the Reach flow, fed one event at a time on a clock."""

    def __init__(self, channel: str = "CSUP", visibility: str = "internal", **reach: Any) -> None:
        escalate = Escalate(Emitter(NAMES), EscalateSettings(target="jira", project="SUP"))
        self.flow = ReachFlow(Emitter(NAMES), ReachSettings(**reach), escalate)
        self.state = ThreadState()
        self.where = ThreadRef(platform="slack", workspace="T1", channel=channel, thread_id="100.000001")
        self.visibility = visibility
        self.clock = T0
        self.n = 0

    def later(self, seconds: float) -> None:
        self.clock += timedelta(seconds=seconds)

    def say(self, text: str, *, who: str = "Ada", bot: bool = False, own: bool = False) -> list[Emit]:
        self.n += 1
        message = SocialMessage(
            thread=self.where,
            message_id=f"100.{self.n:06d}",
            author=Author(id=f"U-{who}", display_name=who, is_bot=bot, is_threadlink=own),
            text=text,
            permalink=f"https://slack.example/{self.n}",
            channel_visibility=self.visibility,  # type: ignore[arg-type]
        )
        return self.flow.on_social(self.state, envelope(message, at=self.clock))

    def linked(self, key: str, kind: str = "ticket", labels: list[str] | None = None, **extra: Any) -> list[Emit]:
        """The link flow says the thread's latest message names a record it knows."""
        event = ThreadLinked(
            thread=self.where,
            message_id=f"100.{self.n:06d}",
            permalink=f"https://slack.example/{self.n}",
            record=RecordRef(system="jira", key=key),
            record_kind=kind,
            labels=labels or [],
            channel_visibility=self.visibility,  # type: ignore[arg-type]
            **extra,
        )
        return self.flow.on_social(self.state, envelope(event, at=self.clock))

    def timer(self, step: int | None = None) -> list[Emit]:
        entry = watch_entry(self.state)
        assert entry is not None or step is not None, "nothing is due"
        step = entry["step"] if step is None else step
        due = datetime.fromtimestamp(entry["due_at"] / 1000, T0.tzinfo) if entry else self.clock
        timer = ThreadTimer(thread=self.where, step=step, due_at=due, channel_visibility=self.visibility)  # type: ignore[arg-type]
        return self.flow.on_social(self.state, envelope(timer, at=self.clock))


def said(emits: list[Emit]) -> list[tuple[str, str]]:
    out = []
    for emit in emits:
        command = emit.envelope.data
        if isinstance(command, PostMessage):
            where = command.destination
            out.append((where.channel if isinstance(where, ChannelRef) else "thread", command.text))
    return out


SLA = {
    "name": "gold",
    "match": {"channels": ["CSUP"]},
    "steps": [{"after_s": 900, "notify": [LEADS]}, {"after_s": 3600, "notify": [ALL_HANDS], "escalate": True}],
}


def test_a_thread_nobody_answers_widens_its_circle_step_by_step() -> None:
    t = Thread(first_answer=[SLA])
    assert t.say("The checkout is down for everyone") == []
    assert watch_entry(t.state)["step"] == 0  # type: ignore[index]
    t.later(600)
    assert t.timer() == []  # early: a timer before its time says nothing
    t.later(300)
    first = said(t.timer())
    assert [where for where, _ in first] == ["CLEADS", "thread"]
    assert "has waited 15 min" in first[0][1] and "“The checkout is down for everyone”" in first[0][1]
    assert first[1][1] == "No answer yet after 15 min: I asked #CLEADS."
    assert t.timer(step=0) == []  # the same step's timer again: taken already
    t.later(2700)
    second = t.timer()
    assert [where for where, _ in said(second)] == ["CALL", "thread"]
    assert [e.envelope.data for e in second if isinstance(e.envelope.data, CreateTicket)], "the last step escalates"
    assert watch_entry(t.state) is None, "no step left: no longer watched"


def test_an_answer_by_someone_else_stops_the_steps_and_is_timed_by_tier() -> None:
    t = Thread(first_answer=[SLA])
    before = FIRST_ANSWER.labels("gold")._sum.get()
    t.say("Is anyone seeing 502s?", who="Ada")
    t.later(120)
    t.say("also on mobile", who="Ada")  # the author again: no answer
    assert watch_entry(t.state) is not None
    t.later(180)
    t.say("Looking into it", who="Grace")
    assert watch_entry(t.state) is None
    assert FIRST_ANSWER.labels("gold")._sum.get() - before == pytest.approx(300)
    t.later(900)
    assert t.timer(step=0) == []  # a timer already on its way changes nothing


def test_bots_and_threadlink_neither_start_nor_answer_a_watched_thread() -> None:
    t = Thread(first_answer=[SLA])
    t.say("deploy finished", who="CI", bot=True)
    assert t.state.reach is None
    t = Thread(first_answer=[SLA])
    t.say("The checkout is down")
    t.say("These articles may help", who="threadlink", own=True)
    t.say("beep", who="Other bridge", bot=True)
    assert watch_entry(t.state) is not None


def test_a_routing_rule_fires_once_per_thread_on_its_keywords_and_records() -> None:
    rule = {"name": "outage", "match": {"keywords": ["outage", "is down"], "records": []}, "notify": [LEADS]}
    t = Thread(rules=[rule])
    assert t.say("how do I reset my password") == []
    notices = said(t.say("I think the checkout IS DOWN"))
    assert notices == [
        ("CLEADS", "A thread in #CSUP matches 'outage': “I think the checkout IS DOWN” https://slack.example/2")
    ]
    assert t.say("still an outage here") == []


def test_a_rule_on_the_record_systems_a_message_names() -> None:
    t = Thread(rules=[{"name": "jira-talk", "match": {"records": ["jira"]}, "escalate": True}])
    t.state.named["100.000001"] = ["github:octo/app#1"]
    assert t.say("see octo/app#1") == []
    t.state.named["100.000002"] = ["jira:SUP-3"]
    assert [type(e.envelope.data) for e in t.say("and SUP-3")] == [CreateTicket]


def test_a_notice_never_quotes_a_thread_in_a_place_wider_than_its_own() -> None:
    t = Thread(channel="GPRIV", visibility="restricted", rules=[{"name": "all", "notify": [LEADS, PUBLIC]}])
    notices = said(t.say("salary numbers for Q4 are wrong"))
    assert len(notices) == 2
    for _, text in notices:
        assert "salary" not in text and "restricted place" in text
    t = Thread(channel="CSUP", visibility="internal", rules=[{"name": "all", "notify": [LEADS, PUBLIC]}])
    by_place = dict(said(t.say("the VPN is flaky")))
    assert "VPN" in by_place["CLEADS"] and "VPN" not in by_place["CPUBLIC"]


def subscribed(emits: list[Emit]) -> list[Subscription]:
    return [e.envelope.data for e in emits if isinstance(e.envelope.data, Subscription)]


def test_subscribing_by_command_publishes_the_subscription_and_confirms_it() -> None:
    t = Thread()
    t.state.named["100.000001"] = ["jira:SUP-7"]
    emits = t.flow.on_social(t.state, envelope(command(t, "<@U0TL> subscribe SUP-7", "100.000001")))
    [subscription] = subscribed(emits)
    assert (subscription.about, subscription.value, subscription.user_id) == ("record", "jira:SUP-7", "U-Ada")
    assert emits[0].topic == NAMES.subscriptions and emits[0].key == subscription.key
    assert said(emits) == [("thread", "Ada: you will hear of threads about SUP-7.")]
    [project] = subscribed(t.flow.on_social(t.state, envelope(command(t, "<@U0TL> subscribe project sup", "100.2"))))
    assert (project.about, project.value) == ("project", "SUP")
    [word] = subscribed(t.flow.on_social(t.state, envelope(command(t, "<@U0TL> unsubscribe keyword Checkout", "1.3"))))
    assert (word.about, word.value, word.active) == ("keyword", "checkout", False)
    usage = said(t.flow.on_social(t.state, envelope(command(t, "<@U0TL> subscribe", "100.4"))))
    assert "subscribe project SUP" in usage[0][1]


def test_a_subscriber_is_mentioned_once_per_thread_when_a_thread_names_what_they_asked_for() -> None:
    t = Thread()
    for about, value, user in (
        ("record", "jira:SUP-7", "U0GRACE"),
        ("project", "SUP", "U0ALAN"),
        ("keyword", "scanner", "U0ADA"),
    ):
        t.flow.subscriptions.put(Subscription(platform="slack", workspace="T1", user_id=user, about=about, value=value))  # type: ignore[arg-type]
    t.state.named["100.000001"] = ["jira:SUP-7"]
    emits = t.say("SUP-7 again: the scanner is offline", who="0ADA")  # the author U-0ADA is not U0ADA
    [notice] = [e.envelope.data for e in emits if isinstance(e.envelope.data, PostMessage)]
    assert notice.mentions == ["U0ADA", "U0ALAN", "U0GRACE"]
    t.state.named["100.000002"] = ["jira:SUP-7"]
    assert said(t.say("SUP-7 still")) == [], "each subscriber is told once per thread"


def test_subscribers_are_not_mentioned_into_a_private_place_nor_for_their_own_words() -> None:
    t = Thread(channel="GPRIV", visibility="restricted")
    t.flow.subscriptions.put(
        Subscription(platform="slack", workspace="T1", user_id="U0GRACE", about="keyword", value="scanner")
    )
    assert said(t.say("the scanner is offline")) == []
    t = Thread()
    t.flow.subscriptions.put(
        Subscription(platform="slack", workspace="T1", user_id="U-Ada", about="keyword", value="scanner")
    )
    assert said(t.say("the scanner is offline", who="Ada")) == []


def test_a_bell_reaction_subscribes_to_the_records_of_its_message_and_removing_it_unsubscribes() -> None:
    t = Thread()
    t.state.named["100.000001"] = ["jira:SUP-7", "jira:SUP-8"]
    added = SocialReaction(thread=t.where, message_id="100.000001", reaction="bell", author=Author(id="U0GRACE"))
    assert [s.value for s in subscribed(t.flow.on_social(t.state, envelope(added)))] == ["jira:SUP-7", "jira:SUP-8"]
    removed = added.model_copy(update={"action": "removed"})
    assert {s.active for s in subscribed(t.flow.on_social(t.state, envelope(removed)))} == {False}
    other = added.model_copy(update={"reaction": "eyes"})
    assert t.flow.on_social(t.state, envelope(other)) == []


def test_a_registry_lookup_reads_only_what_a_message_names_and_forgets_unsubscribed() -> None:
    registry = Subscriptions()
    on = Subscription(platform="slack", workspace="T1", user_id="U0GRACE", about="keyword", value="scanner")
    registry.put(on)
    registry.put(on.model_copy(update={"workspace": "T2", "user_id": "U0OTHER"}))
    assert [s.user_id for s in registry.matching("slack", "T1", "Scanner down", [])] == ["U0GRACE"]
    registry.put(on.model_copy(update={"active": False}))
    assert registry.matching("slack", "T1", "Scanner down", []) == [] and len(registry) == 1


def command(t: Thread, text: str, message_id: str) -> SocialMessage:
    return SocialMessage(
        thread=t.where,
        message_id=message_id,
        author=Author(id="U-Ada", display_name="Ada"),
        text=text,
        mentions_threadlink=True,
    )


def test_one_message_mentions_at_most_20_subscribers_and_one_subscribe_takes_at_most_10_records() -> None:
    t = Thread()
    for n in range(30):
        t.flow.subscriptions.put(
            Subscription(platform="slack", workspace="T1", user_id=f"U0{n:03d}", about="keyword", value="scanner")
        )
    [notice] = [e.envelope.data for e in t.say("the scanner is offline") if isinstance(e.envelope.data, PostMessage)]
    assert len(notice.mentions) == 20
    t.state.named["100.9"] = [f"jira:SUP-{n}" for n in range(25)]
    emits = t.flow.on_social(t.state, envelope(command(t, "<@U0TL> subscribe them all", "100.9")))
    assert len(subscribed(emits)) == 10


BILLING = {"name": "billing", "match": {"record_kinds": ["ticket"], "labels": ["Billing"]}, "notify": [LEADS]}


def test_a_rule_on_record_kinds_and_labels_fires_once_when_the_thread_names_such_a_record() -> None:
    t = Thread(rules=[BILLING])
    assert said(t.say("Refunds fail, see SUP-7")) == []  # the message alone does not know SUP-7's labels
    assert said(t.linked("SUP-8", labels=["frontend"])) == []
    assert said(t.linked("SUP-9", kind="article", labels=["billing"])) == []
    told = said(t.linked("SUP-7", labels=["billing", "p1"]))
    assert told == [("CLEADS", "A thread in #CSUP matches 'billing': “it names SUP-7” https://slack.example/1")]
    assert said(t.linked("SUP-10", labels=["BILLING"])) == [], "once per thread"


def test_a_notice_of_a_rule_on_records_names_the_record_only_where_it_may_show() -> None:
    t = Thread(rules=[{**BILLING, "notify": [PUBLIC]}])
    t.say("Refunds fail, see SEC-1")
    told = said(t.linked("SEC-1", labels=["billing"], record_visibility="restricted"))
    assert [where for where, _ in told] == ["CPUBLIC"]
    assert "SEC-1" not in told[0][1] and "Refunds" not in told[0][1]


def test_rules_on_records_are_validated_with_their_location() -> None:
    with pytest.raises(ValueError, match="keywords cannot be combined with record_kinds or labels"):
        ReachSettings(rules=[{**BILLING, "match": {"labels": ["billing"], "keywords": ["refund"]}}])
    with pytest.raises(ValueError, match="record_kinds and labels are for rules"):
        ReachSettings(first_answer=[{**SLA, "match": {"labels": ["billing"]}}])
    with pytest.raises(ValueError, match="record_kinds"):
        ReachSettings(rules=[{**BILLING, "match": {"record_kinds": ["invoice"]}}])


def test_a_rules_subscribe_brings_its_people_of_the_threads_platform_into_the_thread_once() -> None:
    people = [
        {"platform": "slack", "workspace": "T1", "user_id": "U0BILLING"},
        {"platform": "slack", "workspace": "T9", "user_id": "U0ELSEWHERE"},
        {"platform": "matrix", "workspace": "example.org", "user_id": "@ada:example.org"},
    ]
    t = Thread(rules=[{"name": "refunds", "match": {"keywords": ["refund"]}, "subscribe": people}])
    emits = t.say("A refund went out twice")
    [mention] = [e.envelope.data for e in emits if isinstance(e.envelope.data, PostMessage)]
    assert mention.destination == t.where and mention.mentions == ["U0BILLING"]
    assert "matches 'refunds'" in mention.text
    assert said(t.say("another refund question")) == [], "once per thread"


def test_a_rules_subscribe_mentions_nobody_in_a_private_place() -> None:
    person = {"platform": "slack", "workspace": "T1", "user_id": "U0BILLING"}
    t = Thread(
        visibility="restricted", rules=[{"name": "refunds", "match": {"keywords": ["refund"]}, "subscribe": [person]}]
    )
    assert said(t.say("A refund went out twice")) == []
