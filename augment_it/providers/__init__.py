"""Model providers, one module per official SDK, chosen by name from a registry."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from augment_it.errors import UserInputError
from augment_it.providers.base import (
    MissingKeyError,
    ModelReply,
    ModelRequest,
    Provider,
    ProviderError,
)

Range = tuple[float, float]  # inclusive bounds


@dataclass(frozen=True)
class ProviderSpec:
    key_env: str
    base_url_env: str
    implementation: str  # "module:Class", imported when needed: each SDK takes ~0.4-1.5 s to import
    # The documented range of each sampling parameter, by template field: a value outside it is
    # answered 400 on every record, so a run refuses it before sending any.
    parameter_ranges: Mapping[str, Range]
    # Parameters of which a request may set one only (the API answers 400 to more).
    one_of: frozenset[str] = frozenset()

    @property
    def module(self) -> str:
        return self.implementation.partition(":")[0]

    def out_of_range(self, parameters: Mapping[str, Any]) -> dict[str, Range]:
        """The PARAMETERS set outside what this provider accepts, each with the range it does."""
        return {name: (low, high) for name, (low, high) in self.parameter_ranges.items()
                if parameters.get(name) is not None and not low <= parameters[name] <= high}

    def conflicting(self, parameters: Mapping[str, Any]) -> list[str]:
        """The PARAMETERS set together that this provider takes one at a time (empty if none)."""
        chosen = sorted(name for name in self.one_of if parameters.get(name) is not None)
        return chosen if len(chosen) > 1 else []

    @property
    def factory(self) -> Callable[..., Provider]:
        module, _, name = self.implementation.partition(":")
        return getattr(importlib.import_module(module), name)


PROVIDERS: dict[str, ProviderSpec] = {
    "openai": ProviderSpec("OPENAI_API_KEY", "OPENAI_BASE_URL",
                           "augment_it.providers.openai_chat:OpenAIChat",
                           {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}),
    "anthropic": ProviderSpec("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                              "augment_it.providers.anthropic_messages:AnthropicMessages",
                              {"temperature": (0.0, 1.0), "top_p": (0.0, 1.0)},
                              # Its current models refuse both ("use only one"); the docs say so for all.
                              one_of=frozenset({"temperature", "top_p"})),
    "groq": ProviderSpec("GROQ_API_KEY", "GROQ_BASE_URL", "augment_it.providers.groq_chat:GroqChat",
                         {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}),
}


def provider_spec(name: str) -> ProviderSpec:
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(PROVIDERS)
        raise UserInputError(
            f"unknown provider {name!r}: use one of {known} "
            "(any OpenAI-compatible server works as 'openai' with OPENAI_BASE_URL)") from None


def resolve_key(name: str, explicit: str | None = None) -> str:
    """The API key: given explicitly (a Secret block or option), else the provider's variable."""
    spec = provider_spec(name)
    key = explicit or os.environ.get(spec.key_env)
    if not key:
        raise MissingKeyError(
            f"no API key for {name}: set {spec.key_env} (for an OpenAI-compatible server also "
            f"{spec.base_url_env}), or store it in a Secret block"
        )
    return key


def import_keyed_sdks_in_background() -> None:
    """Start importing the SDK of every provider whose key variable is set, in a daemon thread.

    Called where the process stage's module loads, so the import (0.4-1 s of CPU each) runs
    while Prefect sets the run up rather than between the run's start and its first call. A
    provider opened sooner waits on the import lock for the rest; one without a key variable
    (its key in a block) is imported when opened."""
    modules = [spec.module for spec in PROVIDERS.values() if os.environ.get(spec.key_env)]

    def import_all() -> None:
        # httpcore2 too: the SDKs' HTTP layer imports it (and trio) only when the first client
        # is built, which otherwise put 0.13 s between the stage's first call and the network.
        for module in [*modules, "httpcore2"]:
            importlib.import_module(module)

    if modules:
        threading.Thread(target=import_all, name="sdk-import", daemon=True).start()


def make_provider(name: str, api_key: str | None = None, base_url: str | None = None,
                  timeout: float = 60.0, connections: int = 100) -> Provider:
    return provider_spec(name).factory(api_key=resolve_key(name, api_key), base_url=base_url,
                                       timeout=timeout, connections=connections)


__all__ = ["PROVIDERS", "MissingKeyError", "ModelReply", "ModelRequest", "Provider",
           "ProviderError", "import_keyed_sdks_in_background", "make_provider", "provider_spec",
           "resolve_key"]
