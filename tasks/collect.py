"""Collect-stage tasks: read a source, validate it, keep good and quarantined records."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

import blocks.connectors  # noqa: F401  (lets ?block=NAME in a source URI load a Prefect block)
from augment_it.layout import RunLayout, write_frame, write_json
from augment_it.records import ID, REASON, ROW, content_id
from augment_it.sources import SOURCE, open_source
from augment_it.validation import RecordSchema, ValidationResult, validate_records
from blocks.templates import load_prompt_template
from tasks.failures import fails_cleanly


@task(name="resolve-schema", cache_policy=NO_CACHE)
@fails_cleanly
async def resolve_schema(id_column: str | None, template: str | None) -> RecordSchema:
    """Required fields and types come from the template's `input` section, if it has one."""
    if not template:
        return RecordSchema(id_column=id_column)
    prompt = load_prompt_template(template)
    return RecordSchema(id_column=id_column, required=prompt.required_inputs, types=prompt.input_types)


@task(name="read-source", cache_policy=NO_CACHE)
@fails_cleanly
async def read_source(uri: str, encoding: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    return open_source(uri, encoding).read().frames()


@task(name="validate-records", cache_policy=NO_CACHE)
async def validate(records: pd.DataFrame, schema: RecordSchema) -> ValidationResult:
    return validate_records(records, schema)


@task(name="save-collected", cache_policy=NO_CACHE)
async def save_collected(result: ValidationResult, unreadable: pd.DataFrame, out: str) -> dict[str, int]:
    layout = RunLayout(out)
    if not unreadable.empty:
        unreadable = unreadable.copy()
        unreadable[ID] = [content_id(r) for r in unreadable.to_dict(orient="records")]
    quarantined = pd.concat([result.quarantined, unreadable], ignore_index=True)
    if not quarantined.empty:
        quarantined = quarantined.sort_values(ROW, kind="stable").reset_index(drop=True)
    write_frame(result.valid, layout.collected)
    write_frame(quarantined, layout.quarantine)
    counts = {"valid": len(result.valid), "quarantined": len(quarantined)}
    # The first reasons, to read without opening a Parquet file (`augment plan` shows them).
    reasons = quarantined[REASON].head(3).tolist() if len(quarantined) else []
    write_json({"counts": counts, "quarantine_reasons": reasons, "expectations": result.expectations},
               layout.validation_report)
    return counts


@task(name="publish-validation-summary", cache_policy=NO_CACHE)
async def publish_validation_summary(source: str, result: ValidationResult, unreadable: pd.DataFrame) -> None:
    lines = [f"# Validation of `{source}`", "",
             f"- valid records: **{len(result.valid)}**",
             f"- quarantined by validation: **{len(result.quarantined)}**",
             f"- unreadable rows: **{len(unreadable)}**", "",
             "| expectation | column | ok | failing rows |", "|---|---|---|---|"]
    lines += [f"| {e['expectation']} | {e['column']} | {'yes' if e['success'] else 'no'} | "
              f"{e['unexpected_count']} |" for e in result.expectations]
    reasons = pd.concat([result.quarantined, unreadable], ignore_index=True)
    if not reasons.empty:
        lines += ["", "## Quarantined (first 20)", ""]
        lines += [f"- `{r.get(SOURCE, '')}` {r[REASON]}" for r in reasons.head(20).to_dict(orient="records")]
    await acreate_markdown_artifact(markdown="\n".join(lines), key="validation-summary",
                                    description="Records collected and quarantined")
