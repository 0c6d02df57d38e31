"""Export: every collected record ends in exactly one outcome file, with a summary of counts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from augment_it.enrichers import ENRICHED_FIELDS
from augment_it.output_types import OutputKind, output_specs
from augment_it.records import AI_STATUS, REASON
from augment_it.review import REVIEW_STATUS
from augment_it.sinks import Sink, open_sink

OUTCOMES = ("exported", "rejected", "quarantined", "failed")
FORMATS = ("parquet", "csv", "jsonl")


def destination_sink(uri: str, output_fields: Sequence[str]) -> Sink:
    """Where `--to` writes: the template's answers, which the table must have fields for, and the
    enrichers into the fields it has of their names; or the fields the URI names (`?fields=`)."""
    return open_sink(uri, output_fields, ENRICHED_FIELDS)


def split_outcomes(processed: pd.DataFrame, reviewed: pd.DataFrame,
                   quarantined: pd.DataFrame) -> dict[str, pd.DataFrame]:
    failed = processed[processed[AI_STATUS] == "failed"] if not processed.empty else processed
    approved = reviewed[REVIEW_STATUS] == "approved" if not reviewed.empty else []
    return {
        "exported": reviewed[approved] if not reviewed.empty else reviewed,
        "rejected": reviewed[~approved] if not reviewed.empty else reviewed,
        "quarantined": quarantined,
        "failed": failed,
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as the run's markdown artifact: counts, review, and why records went wrong."""
    lines = ["# Export", "", "| outcome | records |", "|---|---|"]
    counted = ("collected", "quarantined", "failed", "rejected", "exported")
    lines += [f"| {k} | {summary[k]} |" for k in counted]
    lines += ["", "Review: **{status}** ({comment})".format(**summary["review"])]
    if earlier := summary["review"].get("earlier_decisions"):
        lines += ["", f"{earlier} records kept the decision a reviewer made in an earlier run."]
    for field, counts in summary.get("labels", {}).items():
        lines += ["", f"`{field}`: " + ", ".join(f"{label} **{n}**" for label, n in counts.items())]
    why = [f"- failed {count}x: `{_code(reason)}`" for reason, count in summary["failure_reasons"].items()]
    why += [f"- quarantined: `{_code(reason)}`" for reason in summary["quarantine_reasons"]]
    return "\n".join([*lines, *(["", "## Why", "", *why] if why else [])])


# What differs between reasons of one kind: an answer quoted at length, a provider's request id.
PER_RECORD = re.compile(r"""'[^']{40,}'|"[^"]{40,}"|(?<=request ID )[\w-]+|\breq_\w+""", re.IGNORECASE)


def commonest_reasons(reasons: pd.Series, top: int = 3) -> dict[str, int]:
    """The TOP reasons records failed, with how many failed so.

    Reasons alike but for what differs per record (PER_RECORD) count as one, shown with `…` in
    its place; a reason shared word for word is shown whole. Without this, every record whose
    answer was not JSON, or that got an HTTP 500 naming its request id, was a reason of its own.
    """
    kinds = reasons.map(lambda reason: PER_RECORD.sub("…", reason))
    shown = {kind: group.iloc[0] if group.nunique() == 1 else kind for kind, group in reasons.groupby(kinds)}
    return {shown[kind]: int(count) for kind, count in kinds.value_counts().head(top).items()}


def shown_reason(reason: str) -> str:
    """A reason as the command and the artifact show it: its first 300 characters (one that
    quotes an answer can be long; the files hold it whole)."""
    return reason[:300]


def _code(text: str) -> str:
    return shown_reason(text).replace("`", "'").replace("\n", " ")


def summarize(outcomes: dict[str, pd.DataFrame], processed: pd.DataFrame,
              process_report: dict[str, Any]) -> dict[str, Any]:
    counts = {name: len(frame) for name, frame in outcomes.items()}
    collected = len(processed) + counts["quarantined"]
    usage = process_report.get("usage", {})
    declared = process_report.get("template", {}).get("output_types", {})
    return {
        "collected": collected,
        "quarantined": counts["quarantined"],
        "processed": len(processed),
        "failed": counts["failed"],
        "approved": counts["exported"],
        "rejected": counts["rejected"],
        "exported": counts["exported"],
        "balanced": collected == sum(counts.values()),
        "tokens": {"input": usage.get("input_tokens", 0), "output": usage.get("output_tokens", 0),
                   "cached_input": usage.get("cached_input_tokens", 0)},  # part of input
        "cost_usd": usage.get("cost_usd"),
        "records_without_usage": usage.get("records_without_usage", 0),  # not in tokens or cost
        "provider_calls": process_report.get("calls", {}),
        # Records whose answers an earlier run into the same run directory left (not asked again).
        "answers_kept": process_report.get("records", {}).get("kept", 0),
        "retried_rejected": process_report.get("retried_rejected", 0),
        "ai": process_report.get("ai", {}),
        # Why records went wrong, to read without opening a Parquet file: the commonest reasons
        # records failed, and the first quarantined ones (each names its own row).
        "failure_reasons": commonest_reasons(outcomes["failed"][REASON]) if counts["failed"] else {},
        "quarantine_reasons": outcomes["quarantined"][REASON].head(3).tolist()
        if counts["quarantined"] else [],
        "labels": label_counts(outcomes["exported"], declared),
    }


def label_counts(exported: pd.DataFrame, declared: Mapping[str, OutputKind]) -> dict[str, dict[str, int]]:
    """For each output field of labels, how many exported records carry each label, in the order
    the template lists them (a list of labels counts each of its own)."""
    counts: dict[str, dict[str, int]] = {}
    for name, spec in output_specs(declared).items():
        if not spec.labels or name not in exported.columns:
            continue
        tally: Counter[str] = Counter()
        for value in exported[name]:
            # A record the model did not answer keeps its own value there, of whatever shape.
            items = value if isinstance(value, list | tuple | np.ndarray) else [value]
            tally.update(item for item in items if isinstance(item, str))
        counts[name] = {label: tally[label] for label in spec.labels}
    return counts
