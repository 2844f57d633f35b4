"""GitHub Issues: issues become ticket records (`owner/repo#123`), issue comments become record
comments; the sink looks issues up, opens a thread's issue once, and posts back-link comments.
See connector.py for the parts."""
