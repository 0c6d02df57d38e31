"""Run settings as pydantic models: what the CLI, flows and deployments pass around."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from augment_it.calling import CallPolicy

ReviewPolicy = Literal["auto", "ui", "cli"]
ExportFormat = Literal["parquet", "csv", "jsonl", "xlsx"]
MAX_CHUNKS = 50


class ProcessSettings(BaseModel):
    provider: str | None = None  # overrides the template's provider
    model: str | None = None  # overrides the template's model
    call: CallPolicy = Field(default_factory=CallPolicy)
    use_cache: bool = True
    cache_path: str | None = None  # default: $AUGMENT_CACHE_DIR or ~/.cache/augment-it
    prices_path: str | None = None  # YAML price table merged over the built-in one
    chunk_size: int | None = None  # records per checkpoint; default scales with concurrency
    # Refuse, before any call, a run projected to cost more (USD; augment_it/preflight.py).
    max_cost_usd: float | None = Field(None, ge=0)
    # Ask again about records a reviewer rejected, showing the model the rejected answer and comment.
    retry_rejected: bool = False

    def effective_chunk_size(self, records: int) -> int:
        """Records per chunk: enough to keep every slot busy, and at most ~MAX_CHUNKS task runs,
        since each costs Prefect tens of milliseconds whatever its size."""
        if self.chunk_size:
            return self.chunk_size
        return max(200, self.call.concurrency * 8, -(-records // MAX_CHUNKS))
