from __future__ import annotations

from prefect import flow

from augment_it.layout import RunLayout
from tasks.collect import publish_validation_summary, read_source, resolve_schema, save_collected, validate
from tasks.failures import fails_cleanly, outcome


@flow(name="collect", log_prints=True)
@fails_cleanly
def collect(source: str, out: str, template: str | None = None, id_column: str | None = None) -> str:
    """Read records from SOURCE, validate them, and keep them under OUT; returns their URL."""
    schema = outcome(resolve_schema(id_column, template, return_state=True))
    records, unreadable = outcome(read_source(source, return_state=True))
    result = validate(records, schema)
    save_collected(result, unreadable, out)
    publish_validation_summary(source, result, unreadable)
    return RunLayout(out).collected
