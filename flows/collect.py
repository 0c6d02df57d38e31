from __future__ import annotations

from prefect import flow

from augment_it.layout import RunLayout
from tasks.collect import publish_validation_summary, read_source, resolve_schema, save_collected, validate
from tasks.failures import aoutcome, fails_cleanly


# Every stage flow is async, and so are its tasks, though their work is not: Prefect 3.8's sync
# flow engine joins its heartbeat thread on exit, which sleeps in 1 s steps (a stage ended up to
# a second late), and a sync task in an async flow builds its own synchronous API client
# (about 20 ms a task run). Nothing else runs on the event loop while they work.
@flow(name="collect", log_prints=True)
@fails_cleanly
async def collect(source: str, out: str, template: str | None = None, id_column: str | None = None,
                  encoding: str | None = None) -> str:
    """Read records from SOURCE, validate them, and keep them under OUT; returns their URL.

    ENCODING is a text file's (cp1252 for Excel's plain "CSV"); UTF-8 if None, or as a byte order
    mark says."""
    schema = await aoutcome(resolve_schema(id_column, template, return_state=True))
    records, unreadable = await aoutcome(read_source(source, encoding, return_state=True))
    result = await validate(records, schema)
    await save_collected(result, unreadable, out)
    await publish_validation_summary(source, result, unreadable)
    return RunLayout(out).collected
