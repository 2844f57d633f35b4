"""Zendesk Support: ticket webhooks (signed) and the incremental ticket export in; ticket look-ups,
comments (public or internal notes) and a thread's ticket (find-before-create by external_id,
plus an Idempotency-Key) out. See connector.py for the parts."""
