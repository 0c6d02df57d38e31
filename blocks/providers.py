"""Provider credential blocks: an API key (and optional base URL) stored in Prefect, for workers
whose environment does not carry the provider's variables.

    prefect block register -m blocks.providers      # idempotent: updates the types in place

Then create an "Augment OpenAI Credentials" block named `default` in the UI (or in code:
`OpenAICredentials(api_key="sk-...").save("default", overwrite=True)`). A process run looks its
key up in this order: the provider's environment variable (OPENAI_API_KEY, ...), this block
(name from $AUGMENT_CREDENTIALS_BLOCK, default `default`), a Secret block named
`<provider>-api-key`; with none of them the AI step is skipped with a message naming each way.
Nothing here talks to the API at import time.
"""

from __future__ import annotations

import os
from abc import ABC
from typing import ClassVar

from prefect.blocks import system
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from augment_it.providers import PROVIDERS

DEFAULT_BLOCK = "default"
BLOCK_NAME_ENV = "AUGMENT_CREDENTIALS_BLOCK"


class ProviderCredentials(Block, ABC):
    """The fields every provider's credentials have (an interface: not registered itself)."""

    provider: ClassVar[str]

    api_key: SecretStr = Field(description="The provider's API key.")
    base_url: str | None = Field(
        default=None,
        description="Optional: a proxy or compatible server, as the SDK's *_BASE_URL variable takes it "
                    "(OpenAI: with /v1, e.g. http://host:8000/v1; Anthropic and Groq: the host alone)",
    )


class OpenAICredentials(ProviderCredentials):
    """OpenAI, or any OpenAI-compatible server (with its base URL)."""

    provider = "openai"
    _block_type_name = "Augment OpenAI Credentials"
    _block_type_slug = "augment-openai-credentials"
    _description = "API key and optional base URL for OpenAI or any OpenAI-compatible server."


class AnthropicCredentials(ProviderCredentials):
    provider = "anthropic"
    _block_type_name = "Augment Anthropic Credentials"
    _block_type_slug = "augment-anthropic-credentials"
    _description = "API key and optional base URL for Anthropic's Messages API."


class GroqCredentials(ProviderCredentials):
    provider = "groq"
    _block_type_name = "Augment Groq Credentials"
    _block_type_slug = "augment-groq-credentials"
    _description = "API key and optional base URL for Groq."


CREDENTIALS: dict[str, type[ProviderCredentials]] = {
    cls.provider: cls for cls in (OpenAICredentials, AnthropicCredentials, GroqCredentials)
}


def stored_credentials(provider: str) -> tuple[str, str | None] | None:
    """(api key, base URL) from Prefect for PROVIDER, or None when its environment variable is set
    (the environment wins) or nothing is stored. Called at run time, from a task."""
    spec = PROVIDERS.get(provider)
    if spec is None or os.environ.get(spec.key_env):
        return None
    name = os.environ.get(BLOCK_NAME_ENV) or DEFAULT_BLOCK
    try:
        block = CREDENTIALS[provider].load(name, _sync=True)  # a value, not a coroutine, in async tasks too
    except ValueError:  # no such block document (or type not registered)
        pass
    else:
        return block.api_key.get_secret_value(), block.base_url
    try:
        secret = system.Secret.load(f"{provider}-api-key", _sync=True)
    except ValueError:
        return None
    return str(secret.get()), None
