"""Token prices per model, in US dollars per million tokens; users can override the table."""

from __future__ import annotations

from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from augment_it.errors import UserInputError, yaml_error_text

PerMillion = Annotated[float, Field(ge=0)]  # USD per 1M tokens


class PriceFileError(UserInputError):
    """A --prices file that cannot be used; raised before any record is sent."""


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt `cached_imput` would silently not apply

    input: PerMillion
    output: PerMillion
    # Input tokens read from / written to the provider's prompt cache; unset: the `input` price.
    cached_input: PerMillion | None = None
    cache_write: PerMillion | None = None


# List prices at the time of writing; override with `--prices FILE`
# (YAML: model: {input, output, cached_input, cache_write}). OpenAI caches long prompt prefixes on
# its own, so records sharing a long template are partly billed at the cached price.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(input=0.15, output=0.60, cached_input=0.075),
    "gpt-4o": Price(input=2.50, output=10.00, cached_input=1.25),
    "gpt-4.1": Price(input=2.00, output=8.00, cached_input=0.50),
    "gpt-4.1-mini": Price(input=0.40, output=1.60, cached_input=0.10),
    "gpt-4.1-nano": Price(input=0.10, output=0.40, cached_input=0.025),
    "claude-3-5-haiku-latest": Price(input=0.80, output=4.00, cached_input=0.08, cache_write=1.00),
    "claude-haiku-4-5": Price(input=1.00, output=5.00, cached_input=0.10, cache_write=1.25),
    "claude-sonnet-4-5": Price(input=3.00, output=15.00, cached_input=0.30, cache_write=3.75),
    "llama-3.1-8b-instant": Price(input=0.05, output=0.08),
    "llama-3.3-70b-versatile": Price(input=0.59, output=0.79),
}


# Far below a token's price (1e-8 USD and up), far above float noise (2.5199999999999996e-05).
COST_DECIMALS = 12


class PriceTable:
    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)

    @classmethod
    def load(cls, path: str | None) -> PriceTable:
        """The built-in prices with those of the YAML file at PATH (a local path or fsspec URL)."""
        table = cls()
        if not path:
            return table
        from augment_it.layout import filesystem

        fs, fs_path = filesystem(path)
        if not fs.exists(fs_path):
            raise PriceFileError(f"price file {path} does not exist")
        try:
            data = yaml.safe_load(fs.read_bytes(fs_path).decode("utf-8")) or {}
        except yaml.YAMLError as exc:
            raise PriceFileError(f"price file {path}: not valid YAML: {yaml_error_text(exc)}") from None
        except UnicodeDecodeError as exc:
            raise PriceFileError(f"price file {path}: not valid UTF-8: {exc}") from None
        if not isinstance(data, dict):
            raise PriceFileError(f"price file {path}: expected models mapped to prices in USD per 1M "
                                 "tokens, e.g. 'gpt-4o-mini: {input: 0.15, output: 0.60}'")
        for model, price in data.items():
            try:
                table.prices[str(model)] = Price.model_validate(price)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'price'}: {e['msg']}"
                                     for e in exc.errors())
                raise PriceFileError(f"price file {path}, model '{model}': {problems}") from None
        return table

    def cost(self, model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
             cache_write_tokens: int = 0) -> float | None:
        """Cost of one call, or None for a model with no known price. INPUT_TOKENS counts every
        input token; the cache counts are the parts of it priced apart."""
        price = self.prices.get(model)
        if price is None:
            return None
        # max: a server that reports more cached tokens than input is not a discount on the output
        uncached = max(0, input_tokens - cached_input_tokens - cache_write_tokens)
        read_price = price.input if price.cached_input is None else price.cached_input
        write_price = price.input if price.cache_write is None else price.cache_write
        cost = (uncached * price.input + cached_input_tokens * read_price + cache_write_tokens * write_price
                + output_tokens * price.output) / 1_000_000
        return round(cost, COST_DECIMALS)
