"""Configuration of threadlink as one application service on one Matrix homeserver."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class MatrixConfig(BaseModel):
    """One application service registration. Example (threadlink.yaml)::

        connectors:
          matrix:
            homeserver_url: https://matrix.example.org
            server_name: example.org
            as_token: ${MATRIX_AS_TOKEN}
            hs_token: ${MATRIX_HS_TOKEN}

    `threadlink matrix registration` writes the registration file with fresh tokens; the
    homeserver loads it (Synapse: `app_service_config_files`) and PUTs transactions to
    `/webhooks/<connector name>/_matrix/app/v1/transactions/{txnId}`.
    """

    model_config = ConfigDict(extra="forbid")

    homeserver_url: str = Field(description="The homeserver's client-server API base URL.")
    server_name: str = Field(description="The homeserver's name, the part after ':' in user ids.")
    as_token: SecretStr = Field(description="The registration's as_token: threadlink acts on the homeserver with it.")
    hs_token: SecretStr = Field(
        description="The registration's hs_token: transactions without it are answered 401 M_FORBIDDEN."
    )
    sender_localpart: str = Field(default="threadlink", description="Localpart of the service's own user.")
    redelivery_window_s: int = Field(
        default=900,
        ge=0,
        description="At start, events published this long ago are read back so a homeserver's retried "
        "transaction is published once across a restart (0: off).",
    )

    @property
    def bot_user_id(self) -> str:
        return f"@{self.sender_localpart}:{self.server_name}"
