"""Token prices per model, in US dollars per million tokens; users can override the table."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel


class Price(BaseModel):
    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens


# List prices at the time of writing; override with `--prices FILE` (YAML: model: {input, output}).
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(input=0.15, output=0.60),
    "gpt-4o": Price(input=2.50, output=10.00),
    "gpt-4.1": Price(input=2.00, output=8.00),
    "gpt-4.1-mini": Price(input=0.40, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, output=0.40),
    "claude-3-5-haiku-latest": Price(input=0.80, output=4.00),
    "claude-haiku-4-5": Price(input=1.00, output=5.00),
    "claude-sonnet-4-5": Price(input=3.00, output=15.00),
    "llama-3.1-8b-instant": Price(input=0.05, output=0.08),
    "llama-3.3-70b-versatile": Price(input=0.59, output=0.79),
}


class PriceTable:
    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)

    @classmethod
    def load(cls, path: str | None) -> PriceTable:
        table = cls()
        if path:
            data = yaml.safe_load(Path(path).read_text()) or {}
            table.prices.update({model: Price.model_validate(p) for model, p in data.items()})
        return table

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """Cost of one call, or None for a model with no known price."""
        price = self.prices.get(model)
        if price is None:
            return None
        return (input_tokens * price.input + output_tokens * price.output) / 1_000_000
