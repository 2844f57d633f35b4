"""Jira Cloud: issues become ticket records, comments become record comments; the sink looks
issues up and posts back-link comments. See connector.py for the parts."""
