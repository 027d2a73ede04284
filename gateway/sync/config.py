"""The ``[mqtt]`` section: the broker, TLS, topics, custody and the uplink's pacing."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.section import ConfigSection

__all__ = ["MqttConfig"]


class MqttConfig(ConfigSection):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(8883, ge=1, le=65535)
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = True
    allow_plaintext: bool = False
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    keepalive_s: int = Field(60, ge=5, le=3600)
    topic_root: str = "retail/v1/{store_id}/"
    custody: Literal["hq", "broker"] = "hq"
    ack_timeout_s: float = Field(30.0, gt=0, le=3600)
    catchup_messages_per_s: float | None = Field(200.0, gt=0)
    max_events_per_message: int = Field(500, ge=1, le=10_000)
    max_message_bytes: int = Field(128 * 1024, ge=1024, le=64 * 1024 * 1024)
    hq_window_messages: int = Field(
        100, ge=1, le=100_000, description="Envelopes per stream sent ahead of HQ's ack."
    )
    health_interval_s: float = Field(60.0, ge=1, le=3600)

    @field_validator("ca_file", "client_cert", "client_key")
    @classmethod
    def _tls_file_exists(cls, value: Path | None) -> Path | None:
        # A missing file is certain to fail every connection. One this user may not read is
        # left to the daemon (check-config may run as another user); its error names it.
        if value is not None:
            try:
                info = value.stat()
            except (FileNotFoundError, NotADirectoryError):
                raise ValueError(f"{value}: no such file") from None
            except OSError:
                return value
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"{value} is not a file")
        return value

    @field_validator("topic_root")
    @classmethod
    def _topic_root_shape(cls, value: str) -> str:
        if not value.endswith("/") or "{store_id}" not in value or any(c in value for c in "+#"):
            raise ValueError("must end with '/', contain {store_id} and no wildcards")
        return value

    @model_validator(mode="after")
    def _plaintext_is_explicit(self) -> Self:
        if not self.tls and not self.allow_plaintext:
            raise ValueError("tls = false needs allow_plaintext = true (never a silent fallback)")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together (mTLS)")
        return self
