"""The client-server API calls threadlink makes as its application service user (as_token)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx

from connectors.matrix.config import MatrixConfig
from connectors.matrix.mapping import RoomState

log = logging.getLogger(__name__)


class MatrixClient:
    def __init__(self, config: MatrixConfig, *, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=config.homeserver_url.rstrip("/"),
            headers={"Authorization": f"Bearer {config.as_token.get_secret_value()}"},
            timeout=timeout_s,
        )

    async def _state(self, room_id: str, kind: str) -> dict[str, Any] | None:
        response = await self._http.get(f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/{kind}")
        if response.status_code != 200:
            return None  # absent state (404) or a room the service is not in (403)
        body = response.json()
        return body if isinstance(body, dict) else None

    async def room_state(self, room_id: str) -> RoomState | None:
        """The room's join rule, history visibility and encryption, or None when unreadable
        (the room then stays `restricted`, the safe side)."""
        try:
            join_rules = await self._state(room_id, "m.room.join_rules")
            history = await self._state(room_id, "m.room.history_visibility")
            encryption = await self._state(room_id, "m.room.encryption")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("matrix: could not read room %s's state (%s); it counts as restricted", room_id, exc)
            return None
        return RoomState(
            join_rule=(join_rules or {}).get("join_rule"),
            history_visibility=(history or {}).get("history_visibility"),
            encrypted=encryption is not None,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
