"""How big and how slow one webhook request or one event may be: one place, used by the HTTP
layer and the publishers alike, so that what the HTTP layer accepts the broker accepts too.

A body larger than the broker takes for one record can never be published, so answering it
with a 5xx would make the platform redeliver a permanent failure forever: it is a 413.
"""

from __future__ import annotations

#: The largest record value the producer sends (its `max_request_size`). The broker's default
#: `message.max.bytes` is 1048588: this plus the record batch's own overhead.
MAX_RECORD_BYTES = 1024 * 1024

#: What an envelope adds around the platform's payload (CloudEvents attributes, ids, headers),
#: with a wide margin: a webhook body that fits leaves its envelope under MAX_RECORD_BYTES.
ENVELOPE_OVERHEAD_BYTES = 64 * 1024

#: The largest webhook body the HTTP layer reads; larger ones are answered 413.
MAX_WEBHOOK_BODY_BYTES = MAX_RECORD_BYTES - ENVELOPE_OVERHEAD_BYTES

#: How deep JSON may nest. Slack's blocks and Jira's documents stay far below it; deeper input is
#: an attack on recursive code (Python's own limit is 1000 frames), answered 400.
MAX_JSON_DEPTH = 64
