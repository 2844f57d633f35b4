"""The application service registration file a homeserver loads (Synapse:
`app_service_config_files`), made from the connector's config so that both sides hold the same
tokens: `threadlink matrix registration` prints it.

Its namespace is threadlink's own user, exclusively (no one else may register it); no rooms or
aliases: the service hears the rooms its user is invited to and joins (since room version 12
room ids have no server part, so a rooms regex would match nothing useful). `rate_limited` is
false: the homeserver's message limits apply to masqueraded users only, never to the sender.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from connectors.matrix.config import MatrixConfig


class RegistrationError(ValueError):
    """The config lacks what the registration needs; the message says which field and how to fix it."""


def registration(config: MatrixConfig, *, name: str, url: str | None = None) -> dict[str, Any]:
    """The registration as a mapping (the spec's `Registration`), for connector `name`."""
    url = url or config.url
    if not url:
        raise RegistrationError(
            f"connectors.{name}.url is not set: the homeserver needs threadlink's address for this connector, "
            f"e.g. https://threadlink.example.org/webhooks/{name} (or pass --url)"
        )
    if not url.startswith(("https://", "http://")):
        raise RegistrationError(f"connectors.{name}.url: {url!r} is not an http(s) URL")
    user = f"@{re.escape(config.sender_localpart)}:{re.escape(config.server_name)}"
    return {
        "id": config.registration_id,
        "url": url.rstrip("/"),
        "as_token": config.as_token.get_secret_value(),
        "hs_token": config.hs_token.get_secret_value(),
        "sender_localpart": config.sender_localpart,
        "rate_limited": False,
        "receive_ephemeral": False,
        "namespaces": {"users": [{"exclusive": True, "regex": user}], "aliases": [], "rooms": []},
    }


def registration_yaml(config: MatrixConfig, *, name: str, url: str | None = None) -> str:
    header = (
        f"# threadlink's application service registration (connector {name}).\n"
        "# It holds both tokens: keep it as secret as the config. Synapse: list it under app_service_config_files.\n"
    )
    return header + yaml.safe_dump(registration(config, name=name, url=url), sort_keys=False)
