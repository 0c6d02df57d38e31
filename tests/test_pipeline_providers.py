"""The whole pipeline on the embedded Prefect, each provider reached through its official SDK."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest

from augment_it.settings import ProcessSettings
from tests.conftest import DATA, EXAMPLES
from tests.pipeline import OUTCOME_FILES, assert_every_record_once, run_pipeline

pytestmark = pytest.mark.usefixtures("prefect_api")
COMPANIES = EXAMPLES / "data" / "companies.csv"
TEMPLATE = EXAMPLES / "templates" / "company-profile.yaml"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "groq": "llama-3.1-8b-instant"}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_each_provider_fills_the_templates_fields(provider: str, llm, tmp_path: Path) -> None:
    state = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id",
                         settings=ProcessSettings(provider=provider, model=MODELS[provider]))
    assert state.is_completed(), state.message
    summary = state.result()
    ids = assert_every_record_once(tmp_path, summary)
    assert summary["exported"] == 6 and summary["failed"] == 0 and len(ids["quarantined"]) == 2
    exported = pd.read_parquet(tmp_path / "exported.parquet").set_index("_id")
    acme = exported.loc["c001"]
    # The stand-in answers each field from the prompt it was sent, so these prove the round trip.
    assert acme["summary"].startswith("summary of Describe Acme Robotics")
    assert acme["industry"].startswith("industry of Describe Acme Robotics")
    assert pd.api.types.is_integer_dtype(exported["score"]) and acme["score"] > 0
    assert set(exported["_ai_status"]) == {"ok"} and set(exported["_provider"]) == {provider}
    assert exported["_input_tokens"].gt(0).all() and exported["_output_tokens"].gt(0).all()
    assert summary["tokens"]["input"] == int(exported["_input_tokens"].sum())
    assert summary["cost_usd"] > 0
    assert summary["provider_calls"]["answered"] == 6
    kinds = {kind for kind, _ in llm.calls_by_prompt}
    assert kinds == {provider}


def test_a_rerun_is_answered_from_the_cache(llm, tmp_path: Path) -> None:
    first = run_pipeline(COMPANIES, TEMPLATE, tmp_path / "a", id_column="company_id").result()
    calls = llm.total_requests
    second = run_pipeline(COMPANIES, TEMPLATE, tmp_path / "b", id_column="company_id").result()
    assert calls == 6 and llm.total_requests == 6, "a rerun sent requests again"
    assert second["provider_calls"]["cache_hits"] == 6 and second["cost_usd"] == 0
    assert first["exported"] == second["exported"] == 6
    # This run paid nothing; each row still says what its answer cost (it said 0).
    replayed = pd.read_parquet(tmp_path / "b" / "exported.parquet")
    assert replayed["_cached"].all() and (replayed["_calls"] == 0).all()
    assert replayed["_cost_usd"].sum() == pytest.approx(first["cost_usd"], abs=1e-6)
    assert replayed["_input_tokens"].sum() == first["tokens"]["input"]
    # Into the same --out, the finished part is resumed: its answers were paid by the first run,
    # which the summary counted; their rows keep what they cost.
    resumed = run_pipeline(COMPANIES, TEMPLATE, tmp_path / "a", id_column="company_id").result()
    assert resumed["provider_calls"]["answered"] == resumed["provider_calls"]["cache_hits"] == 0
    # ...and says where its answers came from: a rerun read "0 answered, 0 from the cache".
    assert (first["answers_kept"], resumed["answers_kept"]) == (0, 6)
    assert resumed["cost_usd"] == 0 and resumed["tokens"] == {"input": 0, "output": 0, "cached_input": 0}
    paid = pd.read_parquet(tmp_path / "a" / "exported.parquet")["_cost_usd"].sum()
    assert first["cost_usd"] > 0 and paid == pytest.approx(first["cost_usd"], abs=1e-6)
    # --no-cache asks again, even into an --out whose finished parts hold every answer.
    third = run_pipeline(COMPANIES, TEMPLATE, tmp_path / "b", id_column="company_id",
                         settings=ProcessSettings(use_cache=False)).result()
    assert third["provider_calls"]["answered"] == 6 and llm.total_requests == 12 and third["cost_usd"] > 0


def test_an_answer_that_is_not_json_is_repaired_once(llm, tmp_path: Path) -> None:
    llm.script("Borealis Foods", (DATA / "bad" / "not-json-answer.txt").read_text())
    summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id").result()
    assert summary["exported"] == 6 and summary["failed"] == 0
    borealis = pd.read_parquet(tmp_path / "exported.parquet").set_index("_id").loc["c002"]
    assert borealis["_calls"] == 2 and borealis["summary"].startswith("summary of Your answer could not")


def test_an_answer_that_stays_invalid_fails_that_record_only(llm, tmp_path: Path) -> None:
    bad = (DATA / "bad" / "not-json-answer.txt").read_text()
    llm.script("Borealis Foods", bad)
    llm.script("could not be used", bad)  # the repair attempt gets the same non-answer
    state = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id")
    summary = state.result()
    ids = assert_every_record_once(tmp_path, summary)
    assert ids["failed"] == ["c002"] and len(ids["exported"]) == 5
    failed = pd.read_parquet(tmp_path / "failed.parquet").iloc[0]
    assert "not the JSON object asked for" in failed["_reason"]
    assert "after one repair attempt" in failed["_reason"]
    assert failed["_raw_answer"] == bad
    # A rerun into the same --out resumes the finished part and asks again for its failed record only.
    llm.clear_scripts()
    sent = llm.total_requests
    first = pd.read_parquet(tmp_path / "exported.parquet").set_index("_id")
    summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id").result()
    assert summary["exported"] == 6 and summary["failed"] == 0 and llm.total_requests == sent + 1
    again = pd.read_parquet(tmp_path / "exported.parquet").set_index("_id")
    assert list(again.index) == ["c001", "c002", *first.index[1:]]  # in the source's order
    processed = ["summary", "industry", "score", "_input_tokens", "_output_tokens", "_cost_usd", "_calls"]
    # As the first run left them (score was nullable there: c002 had none).
    pd.testing.assert_frame_equal(again.drop(index="c002")[processed], first[processed], check_dtype=False)
    assert pd.api.types.is_integer_dtype(again["score"]) and again.loc["c002", "score"] > 0


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_an_empty_answer_is_asked_again_once_then_fails_that_record(provider: str, llm,
                                                                    tmp_path: Path) -> None:
    """An empty plain-text answer used to be kept as ok and exported as an empty enrichment."""
    template = tmp_path / "one-liner.yaml"
    template.write_text(f"name: one-liner\nprovider: {provider}\nmodel: {MODELS[provider]}\n"
                        "prompt: 'One line about {{ name }}'\n")
    llm.script("Borealis Foods", "")
    llm.script("the answer is empty", "", times=1)  # Borealis's repair: empty again
    state = run_pipeline(COMPANIES, template, tmp_path / "out", id_column="company_id",
                         settings=ProcessSettings(provider=provider, model=MODELS[provider]))
    ids = assert_every_record_once(tmp_path / "out", state.result())
    assert ids["failed"] == ["c002"] and len(ids["exported"]) == 7  # the template checks no input
    failed = pd.read_parquet(tmp_path / "out" / "failed.parquet").iloc[0]
    assert failed["_reason"] == "the answer is empty (also after one repair attempt)"
    assert failed["_calls"] == 2 and failed["_raw_answer"] == ""
    repair = [r for r in llm.requests if "the answer is empty" in json.dumps(r["body"])]
    assert len(repair) == 1 and "JSON" not in json.dumps(repair[0]["body"]), "a plain answer is no JSON"


def test_a_refused_key_fails_every_record_after_one_call_and_a_rerun_sends_them(
        llm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    llm.configure(api_key="sk-right")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key")
    settings = ProcessSettings(call={"concurrency": 1})
    summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path / "a", id_column="company_id",
                           settings=settings).result()
    assert summary["failed"] == 6 and summary["provider_calls"]["not_sent"] == 5 and llm.total_requests == 1
    reasons = pd.read_parquet(tmp_path / "a" / "failed.parquet")["_reason"].tolist()
    refused = "openai: HTTP 401: Incorrect API key provided: sk-*****-key. You can find your API key at " \
              "https://platform.openai.com/account/api-keys."
    assert reasons.count(refused) == 1
    not_sent = f"not sent: an earlier call was refused, as every call of this run would be ({refused})"
    assert reasons.count(not_sent) == 5 and summary["failure_reasons"] == {not_sent: 5, refused: 1}
    monkeypatch.setenv("OPENAI_API_KEY", "sk-right")  # the same --out: its finished part is resumed
    summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path / "a", id_column="company_id",
                           settings=settings).result()
    assert summary["exported"] == 6 and summary["failed"] == 0 and llm.total_requests == 7


def test_a_base_url_nothing_answers_fails_every_record_after_one_records_retries(
        llm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong port in OPENAI_BASE_URL: the records did not each spend their retries on it."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{free.getsockname()[1]}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", closed)
    settings = ProcessSettings(call={"concurrency": 1, "backoff_initial": 0.01, "backoff_max": 0.05})
    summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path / "a", id_column="company_id",
                           settings=settings).result()
    assert summary["failed"] == 6 and summary["provider_calls"]["not_sent"] == 5
    assert summary["provider_calls"]["sent"] == 6  # one record's attempts
    reasons = pd.read_parquet(tmp_path / "a" / "failed.parquet")["_reason"].tolist()
    unreachable = f"openai: cannot connect to {closed}/chat/completions: Cannot connect to host 127.0.0.1:"
    assert sum(r.startswith(unreachable) for r in reasons) == 1
    assert sum(r.startswith("not sent: no call of this run could reach the provider") for r in reasons) == 5
    monkeypatch.setenv("OPENAI_BASE_URL", llm.openai_base_url)  # fixed: the rerun sends them all
    summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path / "a", id_column="company_id",
                           settings=settings).result()
    assert summary["exported"] == 6 and summary["failed"] == 0 and llm.total_requests == 6


def test_a_template_with_an_undefined_variable_fails_records_not_the_run(llm, tmp_path: Path) -> None:
    state = run_pipeline(COMPANIES, DATA / "bad" / "undefined-variable.yaml", tmp_path)
    summary = state.result()
    ids = assert_every_record_once(tmp_path, summary)
    assert len(ids["failed"]) == 8 and llm.total_requests == 0
    reasons = set(pd.read_parquet(tmp_path / "failed.parquet")["_reason"])
    assert reasons == {"template 'undefined-variable' needs field 'founder', which this record lacks"}


def test_without_a_key_the_ai_step_is_skipped_and_says_how_to_enable_it(tmp_path: Path) -> None:
    summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id").result()
    assert summary["ai"]["status"] == "skipped"
    assert "set OPENAI_API_KEY" in summary["ai"]["reason"]
    assert_every_record_once(tmp_path, summary)
    assert json.loads((tmp_path / "summary.json").read_text())["exported"] == 6


def test_a_record_edited_since_the_last_run_is_asked_again_not_resumed(llm, tmp_path: Path) -> None:
    """Every run goes to ./out unless told otherwise; a part was found by the records' ids, so an
    edited record came back with the answer (and the text) of its old version."""
    source = tmp_path / "companies.csv"
    source.write_text(COMPANIES.read_text())
    run_pipeline(source, TEMPLATE, tmp_path / "out", id_column="company_id").result()
    source.write_text(COMPANIES.read_text().replace("warehouse robots", "delivery drones"))
    summary = run_pipeline(source, TEMPLATE, tmp_path / "out", id_column="company_id").result()
    assert summary["provider_calls"]["answered"] == 1 and summary["provider_calls"]["cache_hits"] == 5
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet").set_index("_id")
    assert "delivery drones" in exported.loc["c001", "description"]
    assert len(list((tmp_path / "out" / ".augment" / "process" / "parts").iterdir())) == 1  # the old one went
    assert exported["_cached"].to_dict() == {i: i != "c001" for i in exported.index}  # c001 answered anew


def test_a_rerun_with_a_key_into_the_same_out_asks_the_model(llm, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo runs without a key; rerun with one, it resumed the finished part and asked nothing."""
    monkeypatch.delenv("OPENAI_API_KEY")
    for _ in range(2):  # the second resumes the part as it is: nothing to ask without a key
        summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id").result()
        assert summary["ai"]["status"] == "skipped" and summary["exported"] == 6
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id").result()
    assert summary["ai"]["status"] == "used" and summary["provider_calls"]["answered"] == 6
    exported = pd.read_parquet(tmp_path / "exported.parquet")
    assert set(exported["_ai_status"]) == {"ok"} and exported["summary"].notna().all()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_other_formats_and_a_rerun_of_the_export_does_not_duplicate(fmt: str, tmp_path: Path) -> None:
    """Also: a rerun in another format left the last run's exported.parquet beside the new files,
    holding records it no longer exports for whatever reads that file."""
    for run_fmt in ("parquet", fmt, fmt):
        summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id", fmt=run_fmt).result()
    ids = assert_every_record_once(tmp_path, summary, fmt)
    assert len(ids["exported"]) == 6
    outcome_files = sorted(p.name for p in tmp_path.iterdir() if p.stem in OUTCOME_FILES)
    assert outcome_files == sorted(f"{name}.{fmt}" for name in OUTCOME_FILES)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_a_field_of_labels_is_answered_with_one_of_them(provider: str, llm, tmp_path: Path) -> None:
    """Each provider is sent the labels in its schema; an answer naming one in another case takes
    it, and one naming none is repaired once, then fails its record saying which labels were asked."""
    labels = ["robotics", "food", "software", "health", "other"]
    template = tmp_path / "sector.yaml"
    template.write_text(f"name: sector\nprovider: {provider}\nmodel: {MODELS[provider]}\n"
                        f"prompt: 'Sector of {{{{ name }}}}: {{{{ description }}}}'\n"
                        f"output:\n  sector: [{', '.join(labels)}]\n  sells: list[goods, services]\n")
    llm.script("Sector of Borealis Foods", '{"sector": "Food ", "sells": ["Goods"]}')
    llm.script("Sector of Acme Robotics", '{"sector": "hardware", "sells": []}')
    llm.script("could not be used", '{"sector": "hardware", "sells": []}')  # Acme's repair: no label again
    summary = run_pipeline(COMPANIES, template, tmp_path / "out", id_column="company_id").result()
    ids = assert_every_record_once(tmp_path / "out", summary)
    assert ids["failed"] == ["c001"] and summary["exported"] == 7  # no input types: none quarantined
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet").set_index("_id")
    assert exported.loc["c002", "sector"] == "food" and set(exported["sector"]) <= set(labels)
    assert list(exported.loc["c002", "sells"]) == ["goods"]
    assert {item for items in exported["sells"] for item in items} <= {"goods", "services"}
    failed = pd.read_parquet(tmp_path / "out" / "failed.parquet").iloc[0]
    assert "sector: Input should be 'robotics', 'food', 'software', 'health' or 'other'" in failed["_reason"]
    # Every request names the labels in its schema (the provider's mechanism; Groq's JSON mode has
    # it in the prompt, as quoted JSON) and in the instruction the prompt ends with.
    sent = [json.dumps(r["body"]).replace('\\"', '"') for r in llm.requests]
    assert all(f'"enum": {json.dumps(labels)}' in body for body in sent)
    assert all("sector (one of: robotics, food, software, health, other)" in body for body in sent)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_output_fields_named_as_a_tables_columns_are_asked_under_keys_each_provider_takes(
        provider: str, llm, tmp_path: Path) -> None:
    """Output fields had to be identifiers, so an answer could not be written to an Airtable column
    `AI Summary`; Anthropic refuses such a name as a tool's property key (400). The model is asked
    for `AI_Summary`, and the record gets `AI Summary`, also from an example's answer and a repair."""
    template = tmp_path / "columns.yaml"
    template.write_text(
        f"name: columns\nprovider: {provider}\nmodel: {MODELS[provider]}\n"
        "prompt: 'Describe {{ name }}'\n"
        "output:\n  AI Summary: string\n  Score (1-5): integer\n  Secteur d'activité: [tech, other]\n"
        "examples:\n  - record: {name: Initech}\n"
        "    answer: {AI Summary: Makes software., Score (1-5): 2, Secteur d'activité: tech}\n")
    llm.script("Describe Borealis Foods", '{"AI Summary": "Food.", "Score (1-5)": 4}')  # its own names
    llm.script("could not be used", '{"AI_Summary": "Food.", "Score_1-5": 4, "Secteur_d_activite": "Other"}')
    summary = run_pipeline(COMPANIES, template, tmp_path / "out", id_column="company_id").result()
    ids = assert_every_record_once(tmp_path / "out", summary)
    assert summary["exported"] == 8 and ids["failed"] == [], summary
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet").set_index("_id")
    assert exported.loc["c001", "AI Summary"].startswith("AI_Summary of Describe Acme Robotics")
    assert exported.loc["c002", ["AI Summary", "Score (1-5)", "Secteur d'activité"]].tolist() == [
        "Food.", 4, "other"]
    assert pd.api.types.is_integer_dtype(exported["Score (1-5)"])
    sent = [json.dumps(r["body"]).replace('\\"', '"') for r in llm.requests]
    assert all('"AI_Summary": "Makes software.", "Score_1-5": 2, "Secteur_d_activite": "tech"' in body
               for body in sent)  # the example's answer, under the keys asked for
    assert all("AI_Summary (string), Score_1-5 (integer)" in body for body in sent)


def test_a_field_the_model_may_leave_unknown_keeps_what_the_record_had(llm, tmp_path: Path) -> None:
    """null for an 'or null' field is an answer, not a failure; on a field the record has (one a
    template corrects), it leaves the record's value as it was rather than erasing it."""
    template = tmp_path / "check.yaml"
    template.write_text("name: check\nmodel: gpt-4o-mini\nprompt: 'Check {{ name }}'\noutput:\n"
                        "  employees: integer or null\n  founded: integer or null\n")
    llm.script("Check Borealis Foods", '{"employees": null, "founded": null}')
    summary = run_pipeline(COMPANIES, template, tmp_path / "out", id_column="company_id").result()
    assert summary["failed"] == 0 and llm.total_requests == summary["processed"]  # no repairs
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet").set_index("_id")
    borealis = exported.loc["c002"]
    assert borealis["_ai_status"] == "ok" and pd.isna(borealis["founded"])
    assert str(borealis["employees"]) == "45"  # the CSV's text: no input types declared
    assert exported.drop("c002")["founded"].notna().all()
    assert llm.requests[0]["body"]["response_format"]["json_schema"]["schema"]["properties"]["founded"] == {
        "type": ["integer", "null"]}


def test_an_input_field_declared_or_null_is_checked_where_it_has_a_value(llm, tmp_path: Path) -> None:
    """A declared input type also made its field required: to check the websites a list has, every
    company without one was quarantined; 'url or null' checks the values there and lets blanks by."""
    source = tmp_path / "companies.csv"
    source.write_text("id,name,website,employees\n1,Acme,https://acme.example,12\n2,Borealis,,7\n"
                      "3,Cobalt,not-a-url,5\n4,Delta,https://delta.example,\n")
    template = tmp_path / "about.yaml"
    template.write_text("name: about\nmodel: gpt-4o-mini\n"
                        "prompt: \"About {{ name }} ({{ website | default('no website') }})\"\n"
                        "input: {name: string, website: url or null, employees: integer or null}\n"
                        "output: {summary: string}\n")
    summary = run_pipeline(source, template, tmp_path / "out", id_column="id").result()
    ids = assert_every_record_once(tmp_path / "out", summary)
    assert sorted(ids["exported"]) == ["1", "2", "4"] and ids["quarantined"] == ["3"]
    quarantined = pd.read_parquet(tmp_path / "out" / "quarantined.parquet")
    assert quarantined["_reason"].tolist() == [
        "companies.csv:4: field 'website' = 'not-a-url' is not a valid url"]
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet").set_index("_id")
    assert exported.loc["2", "summary"].startswith("summary of About Borealis (no website)")
    assert pd.api.types.is_integer_dtype(exported["employees"]) and pd.isna(exported.loc["4", "employees"])


def test_the_survey_example_sorts_each_answer_into_its_labels(llm, tmp_path: Path) -> None:
    summary = run_pipeline(EXAMPLES / "data" / "survey.csv", EXAMPLES / "templates" / "survey-sentiment.yaml",
                           tmp_path, id_column="response_id").result()
    ids = assert_every_record_once(tmp_path, summary)
    assert sorted(ids["quarantined"]) == ["r007", "r008"] and len(ids["exported"]) == 6
    assert summary["quarantine_reasons"] == [
        "survey.csv:8: required field 'answer' is empty",
        "survey.csv:9: field 'submitted' = 'last week' is not a valid date"]
    exported = pd.read_parquet(tmp_path / "exported.parquet")
    assert set(exported["sentiment"]) <= {"positive", "negative", "mixed", "neutral"}
    assert {topic for topics in exported["topics"] for topic in topics} <= {
        "pricing", "support", "product", "onboarding", "other"}
    assert all(len(set(topics)) == len(topics) for topics in exported["topics"])  # each label once
    assert sum(summary["labels"]["sentiment"].values()) == 6
    assert list(summary["labels"]["topics"]) == ["pricing", "support", "product", "onboarding", "other"]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_examples_reach_each_provider_as_turns_before_the_record(provider: str, llm, tmp_path: Path) -> None:
    template = tmp_path / "sector.yaml"
    template.write_text(f"name: sector\nprovider: {provider}\nmodel: {MODELS[provider]}\n"
                        "prompt: 'Sector of {{ name }}'\noutput: {sector: [robotics, food, other]}\n"
                        "examples:\n  - record: {name: Tesla}\n    answer: {sector: other}\n")
    summary = run_pipeline(COMPANIES, template, tmp_path / "out", id_column="company_id").result()
    assert summary["exported"] == 8 and summary["failed"] == 0
    for request in llm.requests:
        turns = [(m["role"], m["content"]) for m in request["body"]["messages"] if m["role"] != "system"]
        assert turns[:2] == [("user", "Sector of Tesla"), ("assistant", '{"sector": "other"}')]
        assert turns[2][0] == "user" and turns[2][1].startswith("Sector of ") and len(turns) == 3


def test_an_answer_cut_off_at_max_tokens_fails_that_record_without_a_repair(llm, tmp_path: Path) -> None:
    llm.script("Borealis Foods", "word " * 2000)  # the stand-in cuts it at the template's max_tokens
    state = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id")
    ids = assert_every_record_once(tmp_path, state.result())
    assert ids["failed"] == ["c002"] and len(ids["exported"]) == 5
    failed = pd.read_parquet(tmp_path / "failed.parquet").iloc[0]
    assert failed["_reason"].startswith("the answer was cut off at max_tokens (")
    assert failed["_raw_answer"].startswith("word word") and failed["_calls"] == 1


@pytest.mark.parametrize("model", ["gpt-4o-mini", "a-model-with-no-price"])
def test_records_without_token_usage_are_counted_apart_not_as_free(model: str, llm, tmp_path: Path) -> None:
    llm.configure(p_no_usage=0.5)  # the default seed leaves some answers with usage, some without
    summary = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id",
                           settings=ProcessSettings(model=model)).result()
    assert summary["exported"] == 6
    exported = pd.read_parquet(tmp_path / "exported.parquet")
    unknown = exported["_input_tokens"].isna()
    assert 0 < unknown.sum() < 6
    assert exported.loc[unknown, ["_output_tokens", "_cost_usd"]].isna().all().all()
    assert exported.loc[~unknown, ["_input_tokens", "_output_tokens"]].gt(0).all().all()
    assert pd.api.types.is_integer_dtype(exported["_input_tokens"])
    # Totals over the records whose usage is known, and how many are not in them.
    assert summary["records_without_usage"] == int(unknown.sum())
    assert summary["tokens"]["input"] == int(exported["_input_tokens"].sum())
    if model == "gpt-4o-mini":
        assert summary["cost_usd"] > 0  # the report rounds it to the micro-dollar
        assert summary["cost_usd"] == pytest.approx(exported["_cost_usd"].sum(), abs=1e-6)
    else:  # no price: unknown for every record, as before
        assert summary["cost_usd"] is None


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_input_read_from_the_providers_prompt_cache_is_counted_and_priced_apart(
        provider: str, llm, tmp_path: Path) -> None:
    """A long system prompt shared by every record is cached by the provider after the first call:
    OpenAI counts those tokens inside prompt_tokens, Anthropic beside input_tokens."""
    from augment_it.pricing import DEFAULT_PRICES

    llm.configure(prompt_cache_min_tokens=100)
    template = tmp_path / "long-system.yaml"
    system = "You are a precise analyst. " + "Follow the house style guide to the letter. " * 30
    template.write_text(TEMPLATE.read_text().replace(
        "system: You are a precise analyst. Be factual and brief.", f"system: {system}"))
    model = MODELS[provider]
    summary = run_pipeline(COMPANIES, template, tmp_path / "out", id_column="company_id",
                           settings=ProcessSettings(provider=provider, model=model,
                                                    call={"concurrency": 1})).result()
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet")
    assert summary["exported"] == 6
    cached = exported["_cached_input_tokens"]
    assert pd.api.types.is_integer_dtype(cached) and (cached == 0).sum() == 1  # the first call
    assert (cached.lt(exported["_input_tokens"])).all()  # a part of the input, never all of it
    assert summary["tokens"]["cached_input"] == int(cached.sum()) > 0
    assert summary["tokens"]["input"] == int(exported["_input_tokens"].sum())
    price = DEFAULT_PRICES[model]
    assert price.cached_input is not None and price.cached_input < price.input
    # Anthropic bills writing the cache above the input price; OpenAI writes it for nothing.
    usage = zip(exported["_input_tokens"], cached, exported["_output_tokens"], strict=True)
    expected = [(i - c) * price.input + c * price.cached_input + o * price.output for i, c, o in usage]
    if provider == "anthropic":
        system_tokens = int(cached[cached > 0].iloc[0])
        expected = [e + (system_tokens * (price.cache_write - price.input) if c == 0 else 0)
                    for e, c in zip(expected, cached, strict=True)]
    assert exported["_cost_usd"].tolist() == pytest.approx([e / 1_000_000 for e in expected])


def test_a_temperature_the_provider_refuses_stops_the_run_before_any_call(llm, tmp_path: Path) -> None:
    template = tmp_path / "hot.yaml"
    template.write_text(TEMPLATE.read_text() + "temperature: 1.5\n")  # within OpenAI's 0-2 only
    state = run_pipeline(COMPANIES, template, tmp_path / "out", id_column="company_id",
                         settings=ProcessSettings(provider="anthropic", model="claude-haiku-4-5"))
    assert state.is_failed()
    assert f"template {template}: temperature 1.5 is outside 0.0-1.0, the range anthropic accepts" \
        in state.message
    assert llm.total_requests == 0


def test_integers_stay_integers_through_processing_when_some_are_missing(llm, tmp_path: Path) -> None:
    source = tmp_path / "gaps.jsonl"  # JSON has ints of its own (a CSV holds text unless typed)
    source.write_text('{"id": "c1", "name": "Acme", "employees": 120}\n{"id": "c2", "name": "Borealis"}\n'
                      '{"id": "c3", "name": "Cobalt", "employees": 12}\n')
    template = tmp_path / "t.yaml"
    template.write_text("name: gaps\nprovider: openai\nmodel: gpt-4o-mini\n"
                        "prompt: 'Describe {{ name }}'\noutput:\n  score: integer\n")
    llm.script("Borealis", "this is not JSON")  # fails after its repair: its score stays missing
    llm.script("Your answer could not", "still not JSON")
    summary = run_pipeline(source, template, tmp_path / "out", id_column="id").result()
    assert summary["exported"] == 2 and summary["failed"] == 1
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet").set_index("_id")
    failed = pd.read_parquet(tmp_path / "out" / "failed.parquet")
    for frame, column in ((exported, "employees"), (exported, "score"), (failed, "score")):
        assert pd.api.types.is_integer_dtype(frame[column]), f"{column}: {frame[column].dtype}"
    assert exported["employees"].tolist() == [120, 12] and failed["employees"].isna().all()


def test_a_users_own_underscore_field_is_an_ordinary_field(llm, tmp_path: Path) -> None:
    """Only augment-it's own columns are system columns, not every name with a leading `_`."""
    source = tmp_path / "notes.jsonl"
    source.write_text('{"name": "Acme", "_note": "robots"}\n'
                      '{"name": "Acme", "_note": "berries"}\n')
    template = tmp_path / "t.yaml"
    template.write_text("name: notes\nprovider: openai\nmodel: gpt-4o-mini\n"
                        "prompt: 'Describe {{ name }}, who make {{ _note }}'\noutput:\n  summary: string\n")
    summary = run_pipeline(source, template, tmp_path / "out").result()
    assert summary["exported"] == 2 and summary["quarantined"] == 0, summary
    prompts = " ".join(prompt for _, prompt in llm.calls_by_prompt)
    assert "who make robots" in prompts and "who make berries" in prompts
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet")
    assert sorted(exported["_note"]) == ["berries", "robots"]
    assert exported["_id"].nunique() == 2  # content ids count the field: the records differ by it


def test_nested_values_reach_the_template_and_an_output_field_the_record_has_is_kept_until_answered(
        llm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage files held lists and mappings as JSON text, so `{{ address.city }}` failed every record;
    and an output field named like a record's field was emptied when no answer came."""
    source = tmp_path / "people.jsonl"
    source.write_text(
        '{"id": "p1", "name": "ada lovelace", "address": {"city": "London"}, "tags": ["math"]}\n'
        '{"id": "p2", "name": "alan turing", "address": {"city": "Wilmslow"}, "tags": []}\n')
    template = tmp_path / "t.yaml"
    template.write_text("name: people\nprovider: openai\nmodel: gpt-4o-mini\n"
                        "prompt: 'Write the name {{ name }} of {{ address.city }} "
                        "({{ tags | join(\", \") }})'\n"
                        "output:\n  name: string\n")
    llm.script("alan turing", "not JSON")
    llm.script("Your answer could not", "still not JSON")
    summary = run_pipeline(source, template, tmp_path / "out", id_column="id", fmt="jsonl").result()
    assert summary["exported"] == 1 and summary["failed"] == 1, summary
    assert "Write the name ada lovelace of London (math)" in " ".join(p for _, p in llm.calls_by_prompt)
    exported = [json.loads(line) for line in (tmp_path / "out" / "exported.jsonl").read_text().splitlines()]
    failed = [json.loads(line) for line in (tmp_path / "out" / "failed.jsonl").read_text().splitlines()]
    assert exported[0]["name"].startswith("name of Write the name ada lovelace")
    assert exported[0]["address"] == {"city": "London"} and exported[0]["tags"] == ["math"]  # not text
    assert failed[0]["name"] == "alan turing" and failed[0]["address"] == {"city": "Wilmslow"}

    monkeypatch.delenv("OPENAI_API_KEY")  # skipped: exported with the record's own name
    summary = run_pipeline(source, template, tmp_path / "skipped", id_column="id").result()
    skipped = pd.read_parquet(tmp_path / "skipped" / "exported.parquet").set_index("_id")
    assert summary["ai"]["status"] == "skipped" and skipped["name"].to_dict() == {
        "p1": "ada lovelace", "p2": "alan turing"}


def test_an_outcome_file_read_again_chains_a_second_template_or_reruns_fixed_rows(
        llm, tmp_path: Path) -> None:
    """Every record of an export read as a source was quarantined for carrying augment-it's columns."""
    run_pipeline(COMPANIES, TEMPLATE, tmp_path / "first", id_column="company_id", fmt="csv").result()
    slogan = tmp_path / "slogan.yaml"
    slogan.write_text("name: slogan\nprovider: openai\nmodel: gpt-4o-mini\n"
                      "prompt: 'A slogan for {{ name }}: {{ summary }}'\noutput:\n  slogan: string\n")
    summary = run_pipeline(tmp_path / "first" / "exported.csv", slogan, tmp_path / "second").result()
    assert summary["exported"] == 6 and summary["quarantined"] == 0, summary
    second = pd.read_parquet(tmp_path / "second" / "exported.parquet").set_index("_id")
    assert sorted(second.index) == ["c001", "c002", "c003", "c004", "c005", "c008"]  # the first run's ids
    assert second.loc["c001", "slogan"].startswith("slogan of A slogan for Acme Robotics: summary of")
    assert set(second["_template"]) == {"slogan"} and second["_source"].str.startswith("exported.csv:").all()

    quarantined = pd.read_csv(tmp_path / "first" / "quarantined.csv", dtype=str)
    fixed = quarantined.replace({"many": "12", "not-a-url": "https://granite.example"})
    fixed.to_csv(tmp_path / "fixed.csv", index=False)
    summary = run_pipeline(tmp_path / "fixed.csv", TEMPLATE, tmp_path / "fixed",
                           id_column="company_id").result()
    assert summary["exported"] == 2 and summary["quarantined"] == 0, summary
