"""The pre-flight: what a run would ask and cost, `augment plan`, and `--max-cost` holding a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from augment_it.cache import AnswerCache
from augment_it.cli.main import app
from augment_it.preflight import preflight, records_to_ask
from augment_it.pricing import Price, PriceTable
from augment_it.processing import build_request
from augment_it.providers.base import ModelReply
from augment_it.templates import parse_template

TEMPLATE = """\
name: pitch
model: priced-model
prompt: 'Write a pitch for {{ name }}, who sells {{ product }}.'
output: {pitch: string, score: integer}
max_tokens: 200
"""
PRICES = PriceTable({"priced-model": Price(input=1.0, output=2.0)})  # USD per 1M tokens


def records(count: int) -> list[dict[str, str]]:
    return [{"_id": f"r{i}", "name": f"Company {i}", "product": "tea " * (i + 1)} for i in range(count)]


def test_with_nothing_answered_the_output_is_bounded_by_max_tokens(tmp_path: Path) -> None:
    template = parse_template(TEMPLATE)
    batch = [*records(4), {"_id": "no-product", "name": "Nameless"}]
    forecast = preflight(batch, template, PRICES, AnswerCache(tmp_path / "answers.sqlite"))
    characters = sum(build_request(template, r).characters() for r in batch[:4])
    assert (forecast.records, forecast.to_ask, forecast.answered, forecast.unrenderable) == (5, 4, 0, 1)
    assert "record no-product" in forecast.unrenderable_reasons[0]
    assert "product" in forecast.unrenderable_reasons[0]
    assert forecast.input_tokens == round(characters / 4)
    assert forecast.output_tokens == 4 * 200 and forecast.output_bound
    assert forecast.cost_usd == pytest.approx((forecast.input_tokens * 1.0 + 800 * 2.0) / 1e6)
    assert [p.id for p in forecast.prompts] == ["r0", "r1", "r2"]
    assert forecast.prompts[0].prompt == "Write a pitch for Company 0, who sells tea ."


def test_answers_paid_for_before_are_free_and_set_the_ratio_for_the_rest(tmp_path: Path) -> None:
    template = parse_template(TEMPLATE)
    cache = AnswerCache(tmp_path / "answers.sqlite")
    batch = records(5)
    requests = [build_request(template, r) for r in batch]
    # Two answered: three tokens for every ten characters of their prompts, 30 and 50 tokens out.
    for request, output in zip(requests[:2], (30, 50), strict=True):
        cache.put(request.key(), "openai", template.model,
                  ModelReply("{}", input_tokens=request.characters() * 3 // 10, output_tokens=output))
    ratio = sum(r.characters() * 3 // 10 for r in requests[:2]) / sum(r.characters() for r in requests[:2])
    forecast = preflight(batch, template, PRICES, cache)
    assert (forecast.answered, forecast.to_ask) == (2, 3)
    assert forecast.input_tokens == round(sum(r.characters() for r in requests[2:]) * ratio)
    assert forecast.output_tokens == 3 * 40 and not forecast.output_bound
    assert "2 answer(s)" in forecast.basis


def test_example_answers_give_the_output_length_before_any_answer(tmp_path: Path) -> None:
    answer = {"pitch": "Tea for everyone, every day, at a price anyone can pay.", "score": 7}
    template = parse_template(TEMPLATE + "examples:\n  - record: {name: Acme, product: cups}\n"
                              f"    answer: {json.dumps(answer)}\n")
    forecast = preflight(records(2), template, PRICES, None)
    assert forecast.output_tokens == round(2 * len(json.dumps(answer)) / 4)
    assert not forecast.output_bound and "example answers" in forecast.basis


def test_a_run_is_held_to_its_max_cost(tmp_path: Path) -> None:
    forecast = preflight(records(3), parse_template(TEMPLATE), PRICES, None)
    assert forecast.over_budget(forecast.cost_usd) is None
    refusal = forecast.over_budget(0.00001)
    assert refusal is not None and "more than the run's max cost of $0.00001" in refusal
    assert "nothing was sent" in refusal and "at most $" in refusal
    unpriced = preflight(records(3), parse_template(TEMPLATE.replace("priced-model", "other")), PRICES, None)
    assert unpriced.cost_usd is None
    assert "model other has no price" in (unpriced.over_budget(100) or "")
    answered = unpriced.model_copy(update={"to_ask": 0})
    assert answered.over_budget(0) is None  # nothing to pay for


@pytest.mark.usefixtures("prefect_api")
def test_plan_asks_a_sample_and_a_run_over_its_max_cost_sends_nothing(llm, tmp_path: Path) -> None:
    source = tmp_path / "companies.csv"
    source.write_text("id,name,product\n" + "".join(f"c{i},Company {i},tea\n" for i in range(6))
                      + "c6,,tea\n")
    template = tmp_path / "pitch.yaml"
    template.write_text(TEMPLATE.replace("priced-model", "gpt-4o-mini") + "input: {name: string}\n")
    common = [str(source), "-t", str(template), "--id-column", "id", "--out", str(tmp_path / "out")]

    planned = CliRunner().invoke(app, ["plan", *common, "--sample", "2"])
    assert planned.exit_code == 0, planned.output
    assert llm.stats()["answered"] == 2
    assert "collected 7 record(s), 1 of them quarantined" in planned.output
    assert "asked 2 record(s) first" in planned.output
    assert "c0: ok" in planned.output and "c3: ok" in planned.output  # spread over the records
    assert "6 record(s) to process: 2 answered before (free), 4 to ask" in planned.output
    assert "as for the 2 answer(s) to these prompts paid for before" in planned.output
    kept = json.loads((tmp_path / "out" / ".augment" / "process" / "preflight.json").read_text())
    assert kept["to_ask"] == 4 and kept["cost_usd"] > 0

    refused = CliRunner().invoke(app, ["run", *common, "--max-cost", "0.000000001"])
    assert refused.exit_code == 2
    assert "the 4 prompts to ask would cost more than the run's max cost" in refused.output
    assert llm.stats()["answered"] == 2  # nothing sent

    done = CliRunner().invoke(app, ["run", *common, "--max-cost", "1"])
    assert done.exit_code == 0, done.output
    assert llm.stats()["answered"] == 6  # the sample's answers replayed from the cache
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["provider_calls"]["cache_hits"] == 2 and summary["exported"] == 6


def test_the_sample_is_spread_over_the_records_and_a_rejection_to_retry_is_to_ask(tmp_path: Path) -> None:
    import dataclasses

    from augment_it.processing import open_plan
    from augment_it.settings import ProcessSettings

    template = parse_template(TEMPLATE)
    settings = ProcessSettings(cache_path=str(tmp_path / "answers.sqlite"))
    plan = open_plan(template, settings, api_key="sk-test")
    batch = records(10)
    assert [r["_id"] for r in records_to_ask(batch, template, plan, 3)] == ["r0", "r3", "r6"]
    assert plan.caller is not None and plan.caller.cache is not None
    plan.caller.cache.put(build_request(template, batch[0]).key(), "openai", template.model,
                          ModelReply('{"pitch": "Tea.", "score": 1}', 20, 10))
    assert records_to_ask(batch, template, plan, 1)[0]["_id"] == "r1"
    rejected = dataclasses.replace(plan, rejected={"r0": [('{"pitch": "Tea.", "score": 1}', "too short")]})
    assert preflight(batch, template, PRICES, plan.caller.cache, rejected).to_ask == 9  # the rejection stands
    retried = dataclasses.replace(rejected, retry_rejected=True)
    assert preflight(batch, template, PRICES, plan.caller.cache, retried).to_ask == 10
    assert records_to_ask(batch, template, retried, 1)[0]["_id"] == "r0"
