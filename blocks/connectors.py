"""Prefect blocks for connector credentials and settings, editable in the UI.

Secrets are `SecretStr` (shown masked in the UI, in logs and in reprs). A source or destination
URI names a block with `?block=NAME`; `connector_settings` turns the block into the domain
package's plain settings model, so `augment_it` never imports Prefect. Importing this module
registers that lookup with `augment_it.connections`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from augment_it.connections import ConnectionSettings, register_settings_loader
from augment_it.errors import UserInputError
from augment_it.sources.airtable import DEFAULT_ENDPOINT, AirtableSettings
from augment_it.sources.databricks import DatabricksSettings
from augment_it.sources.nocodb import NocoDBSettings
from augment_it.sources.web import WebSettings


class ConnectorBlock(Block):
    SETTINGS: ClassVar[type[ConnectionSettings]]

    def to_settings(self) -> ConnectionSettings:
        values: dict[str, Any] = {name: getattr(self, name) for name in type(self).model_fields
                                  if getattr(self, name) is not None}
        return self.SETTINGS._build(values, f"{self._block_type_name} block")


class AirtableConnection(ConnectorBlock):
    """Airtable personal access token and API endpoint (override for a proxy or a test server)."""

    _block_type_name = "Airtable Connection"
    SETTINGS: ClassVar[type[ConnectionSettings]] = AirtableSettings

    api_key: SecretStr = Field(description="Personal access token (pat...)")
    endpoint_url: str = Field(default=DEFAULT_ENDPOINT, description="API base URL")
    requests_per_second: float = Field(default=4.5, description="Pace per base; Airtable allows 5")


class NocoDBConnection(ConnectorBlock):
    """NocoDB API token (sent as xc-token) and the instance URL."""

    _block_type_name = "NocoDB Connection"
    SETTINGS: ClassVar[type[ConnectionSettings]] = NocoDBSettings

    url: str = Field(default="https://app.nocodb.com", description="NocoDB base URL")
    api_token: SecretStr = Field(description="API token")
    batch_size: int = Field(default=100, description="Rows per bulk request")


class DatabricksConnection(ConnectorBlock):
    """Databricks workspace URL, personal access token and SQL warehouse."""

    _block_type_name = "Databricks Connection"
    SETTINGS: ClassVar[type[ConnectionSettings]] = DatabricksSettings

    host: str = Field(description="Workspace URL, e.g. https://adb-123.azuredatabricks.net")
    token: SecretStr = Field(description="Personal access token")
    warehouse_id: str | None = Field(default=None, description="SQL warehouse id")
    retry_timeout_seconds: int = Field(default=90, ge=1, description="How long one request is retried "
                                       "while the host does not answer (or answers 429/503)")


class WebFetchSettings(ConnectorBlock):
    """How web pages are fetched: allowed private networks, limits and the user agent."""

    _block_type_name = "Web Fetch Settings"
    SETTINGS: ClassVar[type[ConnectionSettings]] = WebSettings

    allow_networks: list[str] = Field(default_factory=list,
                                      description="Non-public networks allowed anyway, e.g. 10.1.0.0/16")
    timeout_seconds: float = Field(default=20.0, description="Time limit for one URL")
    max_bytes: int = Field(default=5_000_000, description="Largest page read")
    per_host: int = Field(default=2, description="Requests to one host at a time")
    user_agent: str = Field(default="augment-it/0.1 (records enrichment; respects robots.txt)")


BLOCK_FOR: dict[type[ConnectionSettings], type[ConnectorBlock]] = {
    AirtableSettings: AirtableConnection, NocoDBSettings: NocoDBConnection,
    DatabricksSettings: DatabricksConnection, WebSettings: WebFetchSettings,
}


def connector_settings(settings_type: type[ConnectionSettings], name: str) -> ConnectionSettings:
    """The settings held by the block NAME of the type that matches `settings_type`."""
    block_type = BLOCK_FOR[settings_type]
    try:
        block = block_type.load(name, _sync=True)
    except ValueError as exc:
        raise UserInputError(f"no {block_type._block_type_name} block named {name!r}: {exc}") from None
    return block.to_settings()


def register_blocks() -> None:
    """Register the block types with the Prefect API (idempotent), so the UI can create them."""
    for block_type in BLOCK_FOR.values():
        block_type.register_type_and_schema()


register_settings_loader(connector_settings)
