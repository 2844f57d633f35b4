"""Event types (CloudEvents `type`), one place, reverse-DNS."""

SOCIAL_MESSAGE = "io.threadlink.social.message.{action}"  # posted | edited | deleted
SOCIAL_REACTION = "io.threadlink.social.reaction.{action}"  # added | removed
SOCIAL_MEMBERSHIP = "io.threadlink.social.membership.{action}"  # joined | left
SOCIAL_CHANNEL = "io.threadlink.social.channel.{action}"  # created | renamed | archived | unarchived | ...
SOCIAL_ACTION = "io.threadlink.social.action.pressed"
SOCIAL_TIMER = "io.threadlink.social.timer.due"  # a thread's first-answer SLA step (Reach)
SOCIAL_LINKED = "io.threadlink.social.thread.linked"  # a thread names a known record (for Reach)
RECORD_UPSERTED = "io.threadlink.record.{kind}.upserted"  # ticket | article | production_order | machine_state
RECORD_MISSING = "io.threadlink.record.missing"
RECORD_COMMENT = "io.threadlink.record.comment.{action}"  # added | edited | deleted
LINK_REQUESTED = "io.threadlink.link.{action}.requested"  # link | unlink
LINK_CHANGED = "io.threadlink.link.{status}"  # requested | posted | failed | hidden | removed
COMMAND = "io.threadlink.command.{kind}"
OUTCOME = "io.threadlink.outcome.{status}"  # done | failed | superseded
DEAD_LETTER = "io.threadlink.deadletter"
LEDGER_ATTEMPTED = "io.threadlink.ledger.attempted"
LEDGER_DONE = "io.threadlink.ledger.done"
CHECKPOINT = "io.threadlink.connector.checkpoint"
SUBSCRIPTION = "io.threadlink.reach.subscription.{action}"  # added | removed
