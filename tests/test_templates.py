from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from augment_it.processing import apply_overrides, build_request
from augment_it.settings import ProcessSettings
from augment_it.templates import RenderError, TemplateError, extract_json, load_template, parse_template
from tests.conftest import DATA, EXAMPLES

TEMPLATE = """
name: t
model: m
prompt: "Describe {{ name }}"
output: {summary: string, score: integer, tags: "list[string]"}
"""


def test_render_is_strict_about_missing_and_empty_fields() -> None:
    template = parse_template(TEMPLATE)
    assert template.render({"name": "Acme"}) == (None, "Describe Acme")
    with pytest.raises(RenderError, match="needs field 'name'"):
        template.render({"name": None})
    undefined = load_template(str(DATA / "bad" / "undefined-variable.yaml"))
    with pytest.raises(RenderError, match="template 'undefined-variable' needs field 'founder'"):
        undefined.render({"name": "Acme"})


def test_a_field_whose_name_is_not_an_identifier_is_reached_through_record() -> None:
    """Spreadsheet headers ("Company Name", "E-mail") could not be named in a prompt at all."""
    prompt = '{{ record["Company Name"] }} in {{ address.city }}'
    template = parse_template(f"name: t\nmodel: m\nprompt: '{prompt}'\n")
    assert template.render({"Company Name": "Acme", "address": {"city": "Oslo"}})[1] == "Acme in Oslo"
    for record, field, state in (({"Company Name": None, "address": {"city": "Oslo"}}, "Company Name",
                                  "is empty in this record"),
                                 ({"address": {"city": "Oslo"}}, "Company Name", "this record lacks"),
                                 ({"Company Name": "Acme", "address": {}}, "city", "this record lacks")):
        with pytest.raises(RenderError) as raised:
            template.render(record)
        assert str(raised.value) == f"template 't' needs field '{field}', which {state}"
    own = parse_template("name: t\nmodel: m\nprompt: 'Kept: {{ record }}'\n")
    assert own.render({"record": "vinyl"})[1] == "Kept: vinyl"  # a field named record is the record's


def test_sandbox_refuses_unsafe_attribute_access() -> None:
    escape = "{{ name.__class__.__mro__[1].__subclasses__() }}"
    template = parse_template(f'name: t\nmodel: m\nprompt: "{escape}"')
    with pytest.raises(RenderError, match="unsafe"):
        template.render({"name": "x"})


def test_output_schema_and_parsing() -> None:
    template = parse_template(TEMPLATE)
    schema = template.json_schema()
    assert schema["required"] == ["summary", "score", "tags"] and schema["additionalProperties"] is False
    assert template.parse_answer('```json\n{"summary": "s", "score": "7", "tags": ["a"]}\n```') == {
        "summary": "s", "score": 7, "tags": ["a"]}
    with pytest.raises(ValueError, match="not the JSON object asked for"):
        template.parse_answer((DATA / "bad" / "not-json-answer.txt").read_text())
    with pytest.raises(ValueError, match="score"):
        template.parse_answer('{"summary": "s", "score": "high", "tags": []}')


LABELLED = """name: t
model: m
prompt: hi
output:
  sentiment: [positive, negative, neutral]
  topics: list[pricing, support, product]
  mood: [calm, angry, null]
"""


def test_an_output_field_can_be_one_or_any_of_a_list_of_labels() -> None:
    """Sorting answers into fixed labels (sentiment, categories, a taxonomy's topics) had no type:
    a free string let the model answer 'Positive', 'mostly positive' or a sentence, one per record."""
    template = parse_template(LABELLED)
    properties = template.json_schema()["properties"]
    assert properties["sentiment"] == {"type": "string", "enum": ["positive", "negative", "neutral"]}
    assert properties["topics"] == {"type": "array",
                                    "items": {"type": "string", "enum": ["pricing", "support", "product"]}}
    assert properties["mood"] == {"type": ["string", "null"], "enum": ["calm", "angry", None]}
    # Told in the prompt too, for the providers and servers that take no schema.
    assert build_request(template, {}).system == (
        "Answer with a JSON object with exactly these fields: sentiment (one of: positive, negative, "
        "neutral), topics (any of: pricing, support, product), mood (one of: calm, angry, "
        "or null if unknown).")
    # Case and spaces do not make another label; anything else is an answer to repair.
    answer = '{"sentiment": " Negative", "topics": ["Support", "pricing", "support"], "mood": null}'
    assert template.parse_answer(answer) == {"sentiment": "negative", "topics": ["support", "pricing"],
                                             "mood": None}
    assert template.parse_answer('{"sentiment": "neutral", "topics": "Pricing, support", "mood": "calm"}')[
        "topics"] == ["pricing", "support"]  # JSON mode: the labels as one text
    with pytest.raises(ValueError, match="sentiment: Input should be 'positive', 'negative' or 'neutral'"):
        template.parse_answer('{"sentiment": "mixed", "topics": [], "mood": "calm"}')
    with pytest.raises(ValueError, match=r"topics\.1: Input should be 'pricing', 'support' or 'product'"):
        template.parse_answer('{"sentiment": "neutral", "topics": ["pricing", "billing"], "mood": "calm"}')


def test_yes_and_no_are_labels_not_booleans() -> None:
    """YAML 1.1 reads yes, no, on and off as booleans: the most common labels of all, [yes, no],
    were refused as 'True is not text'."""
    template = parse_template("name: t\nmodel: m\nprompt: hi\n"
                              "output: {complaint: [yes, no], light: [on, off]}\n")
    assert [spec.labels for spec in template.output_specs.values()] == [("yes", "no"), ("on", "off")]


def test_an_output_field_can_allow_an_unknown_answer() -> None:
    """Strict schemas require every field, so a model that did not know a company's founding year
    had to make one up: the only way to say 'unknown' was a number."""
    template = parse_template("name: t\nmodel: m\nprompt: hi\noutput:\n  founded: integer or null\n"
                              "  tags: list[string] or null\n  summary: string\n")
    properties = template.json_schema()["properties"]
    assert properties["founded"] == {"type": ["integer", "null"]}
    assert properties["tags"] == {"type": ["array", "null"], "items": {"type": "string"}}
    assert template.json_schema()["required"] == ["founded", "tags", "summary"]
    assert build_request(template, {}).system.endswith(
        "founded (integer, or null if unknown), tags (list[string], or null if unknown), summary (string).")
    assert template.parse_answer('{"founded": null, "tags": null, "summary": "s"}') == {
        "founded": None, "tags": None, "summary": "s"}
    assert template.parse_answer('{"founded": "1999", "tags": ["a"], "summary": "s"}')["founded"] == 1999
    with pytest.raises(ValueError, match="summary: Input should be a valid string"):
        template.parse_answer('{"founded": 1999, "tags": [], "summary": null}')


@pytest.mark.parametrize(("output", "problem"), [
    ("{rating: [1, 2, 3]}",
     "field 'rating': label 1 is not text; quote the labels (rating: ['1', '2', '3'])"),
    ("{valid: [true, false]}",
     "field 'valid': label True is not text; quote the labels (valid: ['true', 'false'])"),
    ("{sentiment: []}", "field 'sentiment' lists no labels: an answer needs two or more to pick from"),
    ("{sentiment: [good, null]}", "field 'sentiment' lists one label only: an answer needs two or more to "
                                  "pick from"),
    ("{sentiment: [good, '']}", "field 'sentiment' has an empty label"),
    ("{topics: 'list[a, b, A]'}", "field 'topics' lists 'a' and 'A', which an answer cannot tell apart"),
    ("{sentiment: enum}",
     "field 'sentiment': 'enum' is no output type: use string, integer, number, boolean or a list of one "
     "(list[string]), one of a list of labels (sentiment: [positive, negative]) or any of them "
     "(sentiment: list[pricing, support]), with 'or null' after it when the answer may be unknown "
     "(sentiment: integer or null)"),
    ("{tags: 'list[strng]'}", "field 'tags': 'list[strng]' is no output type: use string"),
])
def test_a_list_of_labels_that_cannot_be_told_apart_or_an_unknown_type_is_refused(output: str,
                                                                                   problem: str) -> None:
    with pytest.raises(TemplateError) as raised:
        parse_template(f"name: t\nmodel: m\nprompt: hi\noutput: {output}\n")
    assert str(raised.value).startswith(f"<template>: output: {problem}")


def test_an_input_field_may_be_declared_empty_or_of_its_type() -> None:
    template = parse_template("name: t\nmodel: m\nprompt: hi\ninput: {name: string, site: url or null}\n")
    assert template.required_inputs == ["name"] and template.input_types == {"name": "string", "site": "url"}
    with pytest.raises(TemplateError) as raised:
        parse_template("name: t\nmodel: m\nprompt: hi\ninput: {site: uri}\n")
    assert str(raised.value) == (
        "<template>: input: field 'site': 'uri' is no input type: use string, integer, number, boolean, "
        "date, url, with 'or null' after it when a record may leave the field empty (site: url or null)")


FEW_SHOT = """name: t
model: m
prompt: 'Answer: {{ answer }}'
output: {sentiment: [positive, negative], note: string or null}
examples:
  - record: {answer: Love it}
    answer: {sentiment: Positive, note: null}
  - record: {answer: Too slow}
    answer: {sentiment: negative, note: speed}
"""


def test_examples_go_before_each_record_as_turns_the_model_answered() -> None:
    """A model sorts into labels far better when shown a few answered records (few-shot); a
    template had no way to give them but prose in the prompt."""
    request = build_request(parse_template(FEW_SHOT), {"answer": "Meh"})
    assert request.messages == (
        ("user", "Answer: Love it"), ("assistant", '{"sentiment": "positive", "note": null}'),
        ("user", "Answer: Too slow"), ("assistant", '{"sentiment": "negative", "note": "speed"}'),
        ("user", "Answer: Meh"))
    plain = parse_template("name: t\nmodel: m\nprompt: 'Hi {{ x }}'\n"
                           "examples: [{record: {x: 1}, answer: ' One '}]\n")
    assert build_request(plain, {"x": 2}).messages == (
        ("user", "Hi 1"), ("assistant", "One"), ("user", "Hi 2"))


@pytest.mark.parametrize(("example", "problem"), [
    ("{record: {text: x}, answer: {sentiment: positive, note: null}}",
     "template 't', example 1: needs field 'answer', which this record lacks"),
    ("{record: {answer: x}, answer: {sentiment: maybe, note: null}}",
     "template 't', example 1: answer does not match the output fields: sentiment: Input should be "
     "'positive' or 'negative'"),
    ("{record: {answer: x}}", "<template>: examples.0.answer: Field required"),
])
def test_an_example_that_does_not_fit_the_template_is_refused_when_it_is_loaded(example: str,
                                                                                 problem: str) -> None:
    with pytest.raises(TemplateError) as raised:
        parse_template(FEW_SHOT.split("examples:")[0] + f"examples: [{example}]\n")
    assert str(raised.value) == problem


def test_the_readmes_template_is_one_that_loads() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    block = readme.split("```yaml\nname: company-profile\n", 1)[1].split("```", 1)[0]
    template = parse_template("name: company-profile\n" + block)
    assert len(template.output_specs) == 5 and len(template.example_turns) == 2


def test_plain_text_template_fills_a_field_named_after_it() -> None:
    template = parse_template("name: one-liner\nmodel: m\nprompt: hi")
    assert template.output_fields == {"one_liner": "string"}
    assert template.parse_answer(" Hello ") == {"one_liner": "Hello"}
    with pytest.raises(ValueError, match="the answer is empty"):
        template.parse_answer(" \n")
    assert extract_json('noise {"a": 1} noise') == {"a": 1}


def test_a_changed_copy_is_validated_and_renders_its_own_prompt() -> None:
    template = parse_template("name: t\nmodel: m\nsystem: Be brief.\nprompt: 'About {{ name }}'")
    assert template.render({"name": "Acme"}) == ("Be brief.", "About Acme") and template.static_system
    changed = template.model_copy(update={"prompt": "Who runs {{ name }}?", "system": "As {{ name }}."})
    assert changed.render({"name": "Acme"}) == ("As Acme.", "Who runs Acme?")
    assert not changed.static_system and changed.version == template.version
    with pytest.raises(ValidationError, match="max_tokens"):
        template.model_copy(update={"max_tokens": 0})


def test_an_unquoted_list_type_inside_braces_is_named_as_such() -> None:
    with pytest.raises(TemplateError) as raised:
        parse_template("name: t\nmodel: m\nprompt: hi\noutput: {tags: list[string], n: integer}\n")
    assert str(raised.value).endswith('; inside {...}, quote a value with brackets: "list[string]"')


def test_bad_template_files_say_what_is_wrong() -> None:
    with pytest.raises(TemplateError, match="prompt: Field required"):
        parse_template("name: t\nmodel: m\n")
    with pytest.raises(TemplateError, match="line 1"):
        parse_template("name: t\nmodel: m\nprompt: '{{ name '")
    assert load_template(str(EXAMPLES / "templates" / "company-profile.yaml")).version


@pytest.mark.parametrize(("name", "output", "taken"), [
    ("t", "{language: string}", "output field name 'language' is taken by the built-in enrichers"),
    ("t", "{summary: string, decision: string}", "output field name 'decision' is taken by the review sheet"),
    ("t", "{reviewed_by: string}", "output field name 'reviewed_by' is taken by the review ("),
    ("flags", "null", "the answer's field (the template's name) 'flags' is taken by the review sheet"),
])
def test_an_output_field_named_like_one_augment_it_writes_is_refused(name: str, output: str,
                                                                     taken: str) -> None:
    """An answer under `language` was overwritten by the enricher's guess; one under `decision`
    stood in the review sheet's decision column, so an answer 'reject' rejected the record."""
    with pytest.raises(TemplateError, match=rf"^<template>: {re.escape(taken)}.*name it otherwise"):
        parse_template(f"name: {name}\nmodel: m\nprompt: hi\noutput: {output}\n")
    renamed = {"language": "language_ai", "decision": "verdict", "reviewed_by": "reviewer", "flags": "f"}
    for old, new in renamed.items():
        name, output = name.replace(old, new), output.replace(old, new)
    parse_template(f"name: {name}\nmodel: m\nprompt: hi\noutput: {output}\n")


@pytest.mark.parametrize(("output", "refused"), [
    ('{"AI Summary": string, AI_Summary: string}',
     "output fields 'AI Summary' and 'AI_Summary' would both be asked of the model as 'AI_Summary'"),
    ("{_score: integer}", "output field name '_score' must not start with '_'"),
    ('{"score ": integer}', "output field name 'score ' is empty or starts or ends with a space"),
])
def test_an_output_field_name_the_answer_cannot_be_told_by_is_refused(output: str, refused: str) -> None:
    with pytest.raises(TemplateError, match=f"^<template>: output: {re.escape(refused)}"):
        parse_template(f"name: t\nmodel: m\nprompt: hi\noutput: {output}\n")


def test_an_output_field_is_asked_under_a_key_providers_take_and_answered_under_its_name() -> None:
    template = parse_template('name: t\nmodel: m\nprompt: hi\n'
                              'output: {"AI Summary": string, "Résumé (court)": "list[string]", n_: integer}')
    # A name providers take is its own key, as before: the same requests, the same cached answers.
    assert template.answer_keys == {"AI Summary": "AI_Summary", "Résumé (court)": "Resume_court", "n_": "n_"}
    schema = template.json_schema()
    assert schema is not None and schema["required"] == list(schema["properties"]) == [
        "AI_Summary", "Resume_court", "n_"]
    assert template.parse_answer('{"AI_Summary": "x", "Resume_court": ["a"], "n_": 1}') == {
        "AI Summary": "x", "Résumé (court)": ["a"], "n_": 1}
    assert json.loads(template.answer_text({"AI Summary": "x", "Résumé (court)": [], "n_": 1})) == {
        "AI_Summary": "x", "Resume_court": [], "n_": 1}
    with pytest.raises(ValueError, match="AI_Summary: Field required"):
        template.parse_answer('{"Resume_court": [], "n_": 1}')


def hot_template(folder: Path, provider: str, temperature: float) -> Path:
    path = folder / f"{provider}-hot.yaml"
    path.write_text(f"name: t\nprovider: {provider}\nmodel: m\nprompt: hi\ntemperature: {temperature}\n")
    return path


@pytest.mark.parametrize(("provider", "temperature", "allowed"), [
    ("anthropic", 1.5, "0.0-1.0"), ("openai", 2.5, "0.0-2.0"), ("groq", -0.1, "0.0-2.0")])
def test_a_temperature_outside_the_providers_range_fails_when_the_template_is_loaded(
        provider: str, temperature: float, allowed: str, tmp_path: Path) -> None:
    path = str(hot_template(tmp_path, provider, temperature))
    expected = (f"template {path}: temperature {temperature} is outside {allowed}"
                f", the range {provider} accepts")
    with pytest.raises(TemplateError, match=re.escape(expected)):
        apply_overrides(load_template(path), ProcessSettings(), origin=path)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_a_top_p_above_one_fails_when_the_template_is_loaded(provider: str, tmp_path: Path) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text(f"name: t\nprovider: {provider}\nmodel: m\nprompt: hi\ntop_p: 1.5\n")
    with pytest.raises(TemplateError, match=re.escape(
            f"template {path}: top_p 1.5 is outside 0.0-1.0, the range {provider} accepts")):
        apply_overrides(load_template(str(path)), ProcessSettings(), origin=str(path))


def test_anthropic_takes_temperature_or_top_p_not_both(tmp_path: Path) -> None:
    path = tmp_path / "both.yaml"
    path.write_text("name: t\nprovider: anthropic\nmodel: m\nprompt: hi\ntemperature: 0.2\ntop_p: 0.9\n")
    with pytest.raises(TemplateError, match=re.escape(
            f"template {path}: temperature and top_p are both set; anthropic takes only one of them")):
        apply_overrides(load_template(str(path)), ProcessSettings(), origin=str(path))
    # OpenAI and Groq take both.
    openai = apply_overrides(load_template(str(path)), ProcessSettings(provider="openai"), origin=str(path))
    assert (openai.temperature, openai.top_p) == (0.2, 0.9)


def test_the_range_is_the_one_of_the_provider_the_run_uses(tmp_path: Path) -> None:
    openai_hot = str(hot_template(tmp_path, "openai", 1.5))
    assert apply_overrides(load_template(openai_hot), ProcessSettings(), origin=openai_hot).temperature == 1.5
    with pytest.raises(TemplateError, match=re.escape(
            f"template {openai_hot}: temperature 1.5 is outside 0.0-1.0, the range anthropic accepts")):
        apply_overrides(load_template(openai_hot), ProcessSettings(provider="anthropic"), origin=openai_hot)
    anthropic_hot = str(hot_template(tmp_path, "anthropic", 1.5))
    overridden = apply_overrides(load_template(anthropic_hot), ProcessSettings(provider="groq"),
                                 origin=anthropic_hot)
    assert (overridden.provider, overridden.temperature) == ("groq", 1.5)
    # No model, no range to keep to.
    assert apply_overrides(load_template(anthropic_hot), ProcessSettings(provider="none"),
                           origin=anthropic_hot).provider == "none"


@pytest.mark.parametrize("max_tokens", [0, -5, 1.5])
def test_max_tokens_must_be_a_positive_integer(max_tokens: float) -> None:
    with pytest.raises(TemplateError, match="max_tokens"):
        parse_template(f"name: t\nmodel: m\nprompt: hi\nmax_tokens: {max_tokens}")
