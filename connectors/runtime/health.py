"""What /healthz and /readyz report: the parts of this process that are down, and why.

A sink whose credential is refused is down, but the process is not broken: restarting it would
not fix the credential. So /healthz stays 200 (a liveness probe must not restart it) and says
`degraded` with the reasons; ops alert on `threadlink_sink_up == 0`.
"""

from __future__ import annotations

_problems: dict[str, str] = {}


def set_status(component: str, problem: str | None) -> None:
    """`problem` None: the component works."""
    if problem is None:
        _problems.pop(component, None)
    else:
        _problems[component] = problem


def report() -> dict[str, object]:
    if not _problems:
        return {"status": "ok"}
    return {"status": "degraded", "problems": dict(sorted(_problems.items()))}


def ready() -> bool:
    """/readyz: the process does its work (its broker takes what it publishes, its sinks'
    credentials are accepted); a load balancer or rollout waits for it. Liveness stays /healthz."""
    return not _problems
