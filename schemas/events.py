"""Event types (CloudEvents `type`), one place, reverse-DNS."""

SOCIAL_MESSAGE = "io.threadlink.social.message.{action}"  # posted | edited | deleted
RECORD_UPSERTED = "io.threadlink.record.ticket.upserted"
RECORD_MISSING = "io.threadlink.record.missing"
RECORD_COMMENT = "io.threadlink.record.comment.added"
LINK_REQUESTED = "io.threadlink.link.requested"
LINK_CREATED = "io.threadlink.link.created"
COMMAND = "io.threadlink.command.{kind}"
DEAD_LETTER = "io.threadlink.deadletter"
LEDGER_ATTEMPTED = "io.threadlink.ledger.attempted"
LEDGER_DONE = "io.threadlink.ledger.done"
CHECKPOINT = "io.threadlink.connector.checkpoint"
