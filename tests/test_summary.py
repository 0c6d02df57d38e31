"""summary.json's reasons: what a user reads to learn why records failed, without opening a file."""

from __future__ import annotations

import pandas as pd

from augment_it.export import commonest_reasons, label_counts, summary_markdown


def test_reasons_that_differ_only_by_record_count_as_one() -> None:
    """Every record whose answer was not JSON, or that got an HTTP 500 naming its request id, was a
    reason of its own: the top three said '1x' and the other failures were not in the summary."""
    answers = [f"answer is not the JSON object asked for: 'I am sorry, but record {i} has no website "
               "I could read' (also after one repair attempt)" for i in range(5)]
    server = [f"openai: HTTP 500: The server had an error while processing your request. (Please include "
              f"the request ID {rid} in your message.) (after retries)" for rid in ("req_1a2b", "req_9z8y")]
    fields = ["template 't' needs field 'website', which this record lacks"] * 2 + [
        "template 't' needs field 'name', which this record lacks"]
    assert commonest_reasons(pd.Series(answers + server + fields)) == {
        "answer is not the JSON object asked for: … (also after one repair attempt)": 5,
        "openai: HTTP 500: The server had an error while processing your request. (Please include the "
        "request ID … in your message.) (after retries)": 2,
        # Names are short: a reason shared word for word is shown whole, one that names another
        # field is another reason.
        "template 't' needs field 'website', which this record lacks": 2}


def test_the_summary_counts_the_exported_records_per_label() -> None:
    """Sorting survey answers into labels ended with no word of how many took each one."""
    # The last record was not answered (no model ran): it keeps its source's values, of any shape.
    exported = pd.DataFrame({"sentiment": ["positive", "mixed", None, "positive", {"own": 1}],
                             "topics": [["pricing", "support"], [], None, ["support", "Pricing"], "pricing"],
                             "note": ["a", "b", "c", "d", "e"]})
    declared = {"sentiment": ["positive", "negative", "mixed"], "topics": "list[pricing, support]",
                "note": "string", "absent": ["x", "y"]}
    counts = label_counts(exported, declared)
    assert counts == {"sentiment": {"positive": 2, "negative": 0, "mixed": 1},
                      "topics": {"pricing": 2, "support": 2}}
    summary = {"collected": 4, "quarantined": 0, "failed": 0, "rejected": 0, "exported": 4,
               "review": {"status": "auto", "comment": "auto-approved"}, "failure_reasons": {},
               "quarantine_reasons": [], "labels": counts}
    assert "`sentiment`: positive **2**, negative **0**, mixed **1**" in summary_markdown(summary)
