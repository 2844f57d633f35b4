"""Reach: a thread reaches the people who should see it, and a thread nobody answers reaches a
wider circle until somebody does.

    social.events (by thread) --on_social--> commands.<platform>   PostMessage: a notice in a channel
                                                                   (a routing rule, an SLA step) and,
                                                                   in the thread, who was told
                                             commands.<ticketing>  CreateTicket (through Escalate)
    worker timer (streams/reach_timer.py) --> social.events        ThreadTimer: a step is due

Routing rules (`streams.reach.rules`) match a thread's messages on platform, channel, keywords,
the systems of the records a message names, and the place's visibility; each fires once per
thread. Rules on the kinds and labels of the records a thread names match the ThreadLinked
event the link flow sends to the thread's key once it knows the record (before that, a message
names only keys). First-answer SLA tiers (`streams.reach.first_answer`) watch the threads they match from
their first message: each step, when its time comes and nobody but the thread's author has
answered, tells its channels (and may escalate), and says so in the thread. The first answer by
someone else stops the steps and is observed in `threadlink_reach_time_to_first_answer_seconds`
by tier.

Stay safe: a notice quotes the thread only in a place no wider than the thread's own; elsewhere
it says that a thread in a narrower place waits, with its link and without its words. Nothing
threadlink or another bot says starts, matches or answers anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from prometheus_client import Counter, Histogram

from schemas import events
from schemas.commands import PostMessage, command_id_for
from schemas.envelope import Envelope
from schemas.social import (
    Author,
    ChannelRef,
    SocialEvent,
    SocialMessage,
    SocialReaction,
    ThreadLinked,
    ThreadRef,
    ThreadTimer,
)
from schemas.subscriptions import Subscription, SubscriptionKind
from schemas.visibility import Visibility, may_show
from streams.flows.emit import Emit, Emitter, event_ms
from streams.flows.escalate import Escalate
from streams.state import MAX_EXCERPT, Reach, ThreadState
from streams.subscriptions import Subscriptions
from threadlink.config import NoticePlace, ReachSettings, RoutingRule, SlaTier, ThreadMatch

REACH = Counter(
    "threadlink_stream_reach_total",
    "Reach decisions by outcome (routed, watched, answered, step, timer_stale, timer_early, subscribed, "
    "unsubscribed, subscribers_told, subscribed_by_rule).",
    ["outcome"],
)
FIRST_ANSWER = Histogram(
    "threadlink_reach_time_to_first_answer_seconds",
    "From a watched thread's first message to the first answer by someone else, by SLA tier.",
    ["tier"],
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400),
)


#: Records one subscribe (a command, a reaction) takes at most; mentions one message makes at most.
MAX_SUBSCRIBE_AT_ONCE = 10
MAX_MENTIONS = 20
#: People told in one thread that are remembered (not told again).
MAX_TOLD = 200


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Matcher:
    """One rule's or tier's conditions, with its keywords compiled once."""

    match: ThreadMatch

    @cached_property
    def keywords(self) -> re.Pattern[str] | None:
        if not self.match.keywords:
            return None
        words = "|".join(re.escape(word) for word in self.match.keywords)
        return re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)

    def matches(self, message: SocialMessage, systems: set[str]) -> bool:
        return (
            not self.match.on_records
            and self._place(message.thread, message.channel_visibility)
            and (not self.match.records or bool(systems & set(self.match.records)))
            and (self.keywords is None or self.keywords.search(message.text) is not None)
        )

    def matches_linked(self, linked: ThreadLinked) -> bool:
        """A rule on records, when the link flow says which record a thread names."""
        m = self.match
        labels = {label.lower() for label in linked.labels}
        return (
            m.on_records
            and self._place(linked.thread, linked.channel_visibility)
            and (not m.records or linked.record.system in m.records)
            and (not m.record_kinds or linked.record_kind in m.record_kinds)
            and (not m.labels or bool(labels & {label.lower() for label in m.labels}))
        )

    def _place(self, thread: ThreadRef, visibility: Visibility) -> bool:
        m = self.match
        return (
            (not m.platforms or thread.platform in m.platforms)
            and (not m.channels or thread.channel in m.channels)
            and (not m.visibility or visibility in m.visibility)
        )


@dataclass
class ReachFlow:
    emitter: Emitter
    settings: ReachSettings
    escalate: Escalate
    subscriptions: Subscriptions = field(default_factory=Subscriptions)

    def __post_init__(self) -> None:
        word = re.escape(self.settings.subscribe_command)
        self._subscribe_command = re.compile(rf"(?<![\w-])(un)?{word}(?![\w-])(.*)", re.IGNORECASE | re.DOTALL)
        self._rules = [(rule, Matcher(rule.match)) for rule in self.settings.rules]
        self._tiers = [(tier, Matcher(tier.match)) for tier in self.settings.first_answer]

    @property
    def enabled(self) -> bool:
        return bool(self._rules or self._tiers)

    def tier(self, name: str) -> SlaTier | None:
        return next((tier for tier, _ in self._tiers if tier.name == name), None)

    def on_social(self, thread: ThreadState, envelope: Envelope[SocialEvent]) -> list[Emit]:
        event = envelope.data
        if isinstance(event, ThreadTimer):
            return self._on_timer(thread, event, envelope)
        if isinstance(event, ThreadLinked):
            return self._route_linked(thread, event, envelope)
        if isinstance(event, SocialReaction):
            return self._on_reaction(thread, event, envelope)
        if not isinstance(event, SocialMessage) or event.action != "posted":
            return []
        if event.author.is_threadlink or event.author.is_bot:
            return []  # neither our own words nor another bridge's start, match or answer anything
        if event.mentions_threadlink and (asked := self._subscribe_command.search(event.text)):
            return self._on_subscribe(thread, event, envelope, stop=bool(asked.group(1)), rest=asked.group(2))
        emits = self._tell_subscribers(thread, event, envelope)
        if not self.enabled:
            return emits
        now = event_ms(envelope)
        reach = thread.reach
        if reach is not None and reach.tier is not None and reach.answered_at is None:
            if event.author.id != reach.opener:
                reach.answered_at, reach.due_at = now, None
                FIRST_ANSWER.labels(reach.tier).observe(max(0.0, (now - reach.started_at) / 1000))
                REACH.labels("answered").inc()
        elif (reach is None or reach.tier is None) and event.message_id == event.thread.thread_id:
            self._watch(thread, event, now)
        return emits + self._route(thread, event, envelope)

    # -- subscriptions ----------------------------------------------------------------------

    def _on_subscribe(
        self, thread: ThreadState, message: SocialMessage, envelope: Envelope[SocialEvent], *, stop: bool, rest: str
    ) -> list[Emit]:
        words = rest.split()
        wanted: list[tuple[SubscriptionKind, str, str]] = []
        if len(words) >= 2 and words[0].lower() == "keyword":
            wanted = [("keyword", words[1].lower()[:100], f"“{words[1].lower()[:100]}”")]
        elif len(words) >= 2 and words[0].lower() == "project":
            wanted = [("project", words[1].upper()[:100], f"project {words[1].upper()[:100]}")]
        else:
            named = thread.named.get(message.message_id, [])[:MAX_SUBSCRIBE_AT_ONCE]
            wanted = [("record", record_id, record_id.partition(":")[2]) for record_id in named]
        command = self.settings.subscribe_command
        if not wanted:
            usage = f"Say @threadlink {command} SUP-7, {command} project SUP or {command} keyword checkout."
            return [self._say_in_thread(message.thread, usage, envelope, ("usage", message.message_id))]
        return self._subscribe(message.thread, message.author, wanted, envelope, stop=stop, cause_id=message.message_id)

    def _on_reaction(
        self, thread: ThreadState, reaction: SocialReaction, envelope: Envelope[SocialEvent]
    ) -> list[Emit]:
        if (
            reaction.reaction != self.settings.subscribe_reaction
            or reaction.author.is_threadlink
            or reaction.author.is_bot
        ):
            return []
        named = thread.named.get(reaction.message_id, [])[:MAX_SUBSCRIBE_AT_ONCE]
        wanted: list[tuple[SubscriptionKind, str, str]] = [
            ("record", record_id, record_id.partition(":")[2]) for record_id in named
        ]
        if not wanted:
            return []
        return self._subscribe(
            reaction.thread,
            reaction.author,
            wanted,
            envelope,
            stop=reaction.action == "removed",
            cause_id=f"{reaction.message_id}:{reaction.author.id}:{reaction.action}",
        )

    def _subscribe(
        self,
        where: ThreadRef,
        who: Author,
        wanted: list[tuple[SubscriptionKind, str, str]],
        envelope: Envelope[SocialEvent],
        *,
        stop: bool,
        cause_id: str,
    ) -> list[Emit]:
        emits = []
        for about, value, _ in wanted:
            subscription = Subscription(
                platform=where.platform,
                workspace=where.workspace,
                user_id=who.id,
                user_name=who.display_name,
                about=about,
                value=value,
                active=not stop,
            )
            emits.append(
                self.emitter.event(
                    self.emitter.names.subscriptions,
                    subscription.key,
                    subscription,
                    type=events.SUBSCRIPTION.format(action="removed" if stop else "added"),
                    cause=envelope,
                    visibility="internal",
                )
            )
        what = ", ".join(shown for _, _, shown in wanted)
        name = who.display_name or who.id
        said = (
            f"{name}: you will no longer hear of {what}." if stop else f"{name}: you will hear of threads about {what}."
        )
        emits.append(self._say_in_thread(where, said, envelope, ("subscribed", cause_id)))
        REACH.labels("unsubscribed" if stop else "subscribed").inc(len(wanted))
        return emits

    def _tell_subscribers(
        self, thread: ThreadState, message: SocialMessage, envelope: Envelope[SocialEvent]
    ) -> list[Emit]:
        if message.channel_visibility == "restricted":
            return []  # a private place: mentioning outsiders there would only tell the poster who they are
        found = self.subscriptions.matching(
            message.thread.platform, message.thread.workspace, message.text, thread.named.get(message.message_id, [])
        )
        told = set(thread.reach.told) if thread.reach is not None else set()
        new = sorted({s.user_id for s in found if s.user_id != message.author.id and s.user_id not in told})
        if not new:
            return []
        new = new[:MAX_MENTIONS]
        reach = thread.reach = thread.reach or Reach()
        reach.told = [*reach.told, *new][-MAX_TOLD:]
        what = sorted({s.value.partition(":")[2] or s.value for s in found if s.user_id in new})
        said = PostMessage(
            command_id=command_id_for("post_message", "reach", message.thread.id, "subscribers", message.message_id),
            target=message.thread.platform,
            reply_key=message.thread.id,
            destination=message.thread,
            text=f"You asked to hear of {', '.join(what)[:300]}: this thread is about it.",
            mentions=new,
        )
        REACH.labels("subscribers_told").inc(len(new))
        return [self.emitter.command(said, message.thread.id, envelope, visibility=message.channel_visibility)]

    # -- first-answer SLA -------------------------------------------------------------------

    def _watch(self, thread: ThreadState, message: SocialMessage, now: int) -> None:
        tier = next((tier for tier, matcher in self._tiers if matcher.matches(message, set())), None)
        if tier is None:
            return
        reach = thread.reach = thread.reach or Reach()
        reach.tier, reach.opener, reach.started_at, reach.thread = tier.name, message.author.id, now, message.thread
        reach.steps_done, reach.answered_at = 0, None
        reach.due_at = now + int(tier.steps[0].after_s * 1000)
        reach.excerpt = message.text[:MAX_EXCERPT]
        reach.permalink, reach.place_visibility = message.permalink, message.channel_visibility
        REACH.labels("watched").inc()

    def _on_timer(self, thread: ThreadState, timer: ThreadTimer, envelope: Envelope[SocialEvent]) -> list[Emit]:
        reach = thread.reach
        tier = self.tier(reach.tier) if reach is not None and reach.tier is not None else None
        if reach is None or tier is None or reach.due_at is None or reach.answered_at is not None:
            if reach is not None:
                reach.due_at = None  # answered, or its tier is no longer configured: watch no more
            REACH.labels("timer_stale").inc()
            return []
        if timer.step != reach.steps_done:
            REACH.labels("timer_stale").inc()  # a step already taken (a timer sent twice)
            return []
        now = event_ms(envelope)
        if now < reach.due_at:
            REACH.labels("timer_early").inc()
            return []
        step = tier.steps[reach.steps_done]
        waited = _minutes(step.after_s)
        emits = self._tell(
            step.notify,
            reach,
            timer.thread,
            envelope,
            why=f"has waited {waited} for an answer",
            id_parts=("sla", tier.name, str(reach.steps_done)),
        )
        if step.escalate:
            emits += self._escalate(thread, timer.thread, envelope, f"no answer after {waited}", reach.place_visibility)
        told = ", ".join(f"#{place.channel}" for place in step.notify)
        said = f"No answer yet after {waited}: " + (f"I asked {told}." if told else "I opened a ticket.")
        emits.append(self._say_in_thread(timer.thread, said, envelope, ("sla", tier.name, str(reach.steps_done))))
        reach.steps_done += 1
        more = reach.steps_done < len(tier.steps)
        reach.due_at = reach.started_at + int(tier.steps[reach.steps_done].after_s * 1000) if more else None
        REACH.labels("step").inc()
        return emits

    # -- routing rules ----------------------------------------------------------------------

    def _route(self, thread: ThreadState, message: SocialMessage, envelope: Envelope[SocialEvent]) -> list[Emit]:
        systems = {record_id.partition(":")[0] for record_id in thread.named.get(message.message_id, [])}
        emits: list[Emit] = []
        for rule, matcher in self._rules:
            if thread.reach is not None and rule.name in thread.reach.routed:
                continue
            if not matcher.matches(message, systems):
                continue
            reach = thread.reach = thread.reach or Reach()
            reach.routed.append(rule.name)
            about = Reach(
                excerpt=message.text[:MAX_EXCERPT],
                permalink=message.permalink,
                place_visibility=message.channel_visibility,
            )
            emits += self._tell(
                rule.notify, about, message.thread, envelope, why=f"matches '{rule.name}'", id_parts=("rule", rule.name)
            )
            if rule.escalate:
                emits += self._escalate(
                    thread, message.thread, envelope, f"rule {rule.name}", message.channel_visibility
                )
            emits += self._bring_in(thread, rule, message.thread, message.channel_visibility, envelope)
            REACH.labels("routed").inc()
        return emits

    def _route_linked(self, thread: ThreadState, linked: ThreadLinked, envelope: Envelope[SocialEvent]) -> list[Emit]:
        """Rules on record kinds and labels. The notice names the record only where it may show."""
        emits: list[Emit] = []
        for rule, matcher in self._rules:
            if thread.reach is not None and rule.name in thread.reach.routed:
                continue
            if not matcher.matches_linked(linked):
                continue
            reach = thread.reach = thread.reach or Reach()
            reach.routed.append(rule.name)
            for place in rule.notify:
                named = linked.record.key if may_show(linked.record_visibility, place.visibility) else "a record"
                about = Reach(
                    excerpt=f"it names {named}", permalink=linked.permalink, place_visibility=linked.channel_visibility
                )
                why = f"matches '{rule.name}'"
                emits += self._tell([place], about, linked.thread, envelope, why=why, id_parts=("rule", rule.name))
            if rule.escalate:
                emits += self._escalate(thread, linked.thread, envelope, f"rule {rule.name}", linked.channel_visibility)
            emits += self._bring_in(thread, rule, linked.thread, linked.channel_visibility, envelope)
            REACH.labels("routed").inc()
        return emits

    def _bring_in(
        self,
        state: ThreadState,
        rule: RoutingRule,
        thread: ThreadRef,
        place: Visibility,
        envelope: Envelope[SocialEvent],
    ) -> list[Emit]:
        """A rule's `subscribe`: its people of the thread's platform and workspace are mentioned in
        the thread once (not those already told), never in a private place."""
        if place == "restricted":
            return []
        reach = state.reach = state.reach or Reach()
        told = set(reach.told)
        people = [
            p.user_id
            for p in rule.subscribe
            if p.platform == thread.platform and p.workspace == thread.workspace and p.user_id not in told
        ]
        people = list(dict.fromkeys(people))[:MAX_MENTIONS]
        if not people:
            return []
        reach.told = [*reach.told, *people][-MAX_TOLD:]
        said = PostMessage(
            command_id=command_id_for("post_message", "reach", thread.id, "rule", rule.name, "subscribe"),
            target=thread.platform,
            reply_key=thread.id,
            destination=thread,
            text=f"Bringing you in: this thread matches '{rule.name}'.",
            mentions=people,
        )
        REACH.labels("subscribed_by_rule").inc(len(people))
        return [self.emitter.command(said, thread.id, envelope, visibility=place)]

    def _escalate(
        self, state: ThreadState, thread: ThreadRef, envelope: Envelope[SocialEvent], why: str, place: Visibility
    ) -> list[Emit]:
        """Escalate's own request: one ticket per thread, however many rules and steps ask."""
        if not self.escalate.enabled:
            return []
        return self.escalate.request_ticket(
            state, thread, envelope, asked_by=f"threadlink ({why})", place=place, acknowledge=False
        )

    # -- what is said -----------------------------------------------------------------------

    def _tell(
        self,
        places: list[NoticePlace],
        about: Reach,
        thread: ThreadRef,
        envelope: Envelope[SocialEvent],
        *,
        why: str,
        id_parts: tuple[str, ...],
    ) -> list[Emit]:
        emits = []
        link = f" {about.permalink}" if about.permalink else ""
        for place in places:
            if may_show(about.place_visibility, place.visibility):
                text = f"A thread in #{thread.channel} {why}: “{about.excerpt}”{link}"
                visibility: Visibility = about.place_visibility
            else:
                text = f"A thread in a {about.place_visibility} place {why} (its words stay there).{link}"
                visibility = place.visibility
            destination = ChannelRef(platform=place.platform, workspace=place.workspace, channel=place.channel)
            notice = PostMessage(
                command_id=command_id_for("post_message", "reach", thread.id, *id_parts, place.platform, place.channel),
                target=place.platform,
                reply_key=thread.id,
                destination=destination,
                text=text[:4000],
            )
            emits.append(self.emitter.command(notice, thread.id, envelope, visibility=visibility))
        return emits

    def _say_in_thread(
        self, thread: ThreadRef, text: str, envelope: Envelope[SocialEvent], id_parts: tuple[str, ...]
    ) -> Emit:
        said = PostMessage(
            command_id=command_id_for("post_message", "reach", thread.id, *id_parts, "thread"),
            target=thread.platform,
            reply_key=thread.id,
            destination=thread,
            text=text,
        )
        visibility = envelope.data.channel_visibility  # type: ignore[union-attr]
        return self.emitter.command(said, thread.id, envelope, visibility=visibility)
