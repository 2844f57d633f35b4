"""Configuration of threadlink as one application service on one Matrix homeserver."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class MatrixConfig(BaseModel):
    """One application service registration. Example (threadlink.yaml)::

        connectors:
          matrix:
            homeserver_url: https://matrix.example.org
            server_name: example.org
            url: https://threadlink.example.org/webhooks/matrix
            as_token: ${MATRIX_AS_TOKEN}
            hs_token: ${MATRIX_HS_TOKEN}

    `threadlink matrix registration` prints the registration file made from these (the same
    tokens on both sides); the homeserver loads it (Synapse: `app_service_config_files`) and PUTs transactions to
    `/webhooks/<connector name>/_matrix/app/v1/transactions/{txnId}`.
    """

    model_config = ConfigDict(extra="forbid")

    homeserver_url: str = Field(description="The homeserver's client-server API base URL.")
    server_name: str = Field(description="The homeserver's name, the part after ':' in user ids.")
    as_token: SecretStr = Field(description="The registration's as_token: threadlink acts on the homeserver with it.")
    hs_token: SecretStr = Field(
        description="The registration's hs_token: a transaction without a token is answered 401 "
        "M_UNAUTHORIZED, one with another token 403 M_FORBIDDEN."
    )
    sender_localpart: str = Field(default="threadlink", description="Localpart of the service's own user.")
    url: str | None = Field(
        default=None,
        description="Where the homeserver reaches threadlink's webhooks for this connector, e.g. "
        "https://threadlink.example.org/webhooks/matrix (the registration's `url`; "
        "`threadlink matrix registration` needs it).",
    )
    registration_id: str = Field(default="threadlink", description="The registration's `id`, unique on the homeserver.")
    messages_per_room_per_s: float = Field(
        default=1.0,
        gt=0,
        description="Sends (cards, edits, redactions) per room per second, on average. Synapse does not "
        "limit an application service's own user, but other homeservers or a proxy in front may (429).",
    )
    room_burst: int = Field(default=5, ge=1, description="Sends a room may have at once before the average holds.")
    max_concurrency: int = Field(default=16, ge=1, le=256, description="Client-server API calls in flight at once.")
    redelivery_window_s: int = Field(
        default=900,
        ge=0,
        description="At start, events published this long ago are read back so a homeserver's retried "
        "transaction is published once across a restart (0: off).",
    )

    @property
    def bot_user_id(self) -> str:
        return f"@{self.sender_localpart}:{self.server_name}"
