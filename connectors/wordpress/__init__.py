"""WordPress: posts and pages polled in as article records; look-ups and a thread's draft post out."""
