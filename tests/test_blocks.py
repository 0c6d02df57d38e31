"""Blocks: prompt templates by block name, provider keys from credential blocks, registration."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from prefect.blocks.system import Secret
from prefect.cli.block import _register_blocks_in_module
from prefect.client.orchestration import get_client

import blocks.providers
import blocks.templates
from augment_it.settings import ProcessSettings
from augment_it.templates import TemplateError, load_template
from blocks.providers import BLOCK_NAME_ENV, OpenAICredentials, stored_credentials
from blocks.templates import PromptTemplateBlock, load_prompt_template
from tests.conftest import EXAMPLES
from tests.pipeline import assert_every_record_once, run_pipeline

pytestmark = pytest.mark.usefixtures("prefect_api")
COMPANIES = EXAMPLES / "data" / "companies.csv"
TEMPLATE = EXAMPLES / "templates" / "company-profile.yaml"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_registering_twice_leaves_one_type_per_block_and_no_interface() -> None:
    for _ in range(2):
        await _register_blocks_in_module(blocks.providers)
        await _register_blocks_in_module(blocks.templates)
    async with get_client() as client:
        slugs = [t.slug for t in await client.read_block_types()]
    ours = sorted(s for s in slugs if s.startswith("augment-"))
    assert ours == ["augment-anthropic-credentials", "augment-groq-credentials",
                    "augment-openai-credentials", "augment-prompt-template"]


def test_a_template_block_gives_the_same_template_as_its_file() -> None:
    name = unique("company-profile")
    PromptTemplateBlock.from_file(TEMPLATE).save(name)
    try:
        assert load_prompt_template(f"block:{name}") == load_template(str(TEMPLATE))
        assert load_prompt_template(str(TEMPLATE)) == load_template(str(TEMPLATE))
    finally:
        PromptTemplateBlock.delete(name)


def test_a_missing_template_block_is_named_in_the_error() -> None:
    with pytest.raises(TemplateError, match="no prompt template block named 'nope-404'"):
        load_prompt_template("block:nope-404")


def test_augment_run_takes_a_template_block(tmp_path: Path) -> None:
    """The CLI checked its template as a file, so `-t block:NAME` stopped it before any flow."""
    from typer.testing import CliRunner

    from augment_it.cli.main import app

    name = unique("company-profile")
    PromptTemplateBlock.from_file(TEMPLATE).save(name)
    try:
        result = CliRunner().invoke(app, ["run", str(COMPANIES), "-t", f"block:{name}", "--provider", "none",
                                          "--id-column", "company_id", "--out", str(tmp_path)])
    finally:
        PromptTemplateBlock.delete(name)
    assert result.exit_code == 0, result.output
    assert set(pd.read_parquet(tmp_path / "exported.parquet")["_template"]) == {"company-profile"}


def test_a_broken_template_is_refused_before_it_is_stored(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nmodel: m\nprompt: '{{ unclosed'\n")
    with pytest.raises(TemplateError):
        PromptTemplateBlock.from_file(broken)


def test_the_environment_wins_over_a_stored_key(monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique("creds")
    monkeypatch.setenv(BLOCK_NAME_ENV, name)
    OpenAICredentials(api_key="sk-from-block", base_url="http://block.invalid/v1").save(name)
    try:
        assert stored_credentials("openai") == ("sk-from-block", "http://block.invalid/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        assert stored_credentials("openai") is None
    finally:
        OpenAICredentials.delete(name)


def test_a_secret_block_is_the_last_resort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BLOCK_NAME_ENV, unique("absent"))
    assert stored_credentials("groq") is None
    Secret(value="gsk-from-secret").save("groq-api-key", overwrite=True)
    try:
        assert stored_credentials("groq") == ("gsk-from-secret", None)
    finally:
        Secret.delete("groq-api-key")


@pytest.mark.slow
def test_pipeline_with_template_and_key_from_blocks_only(tmp_path: Path, llm: object,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No key or base URL in the environment: both come from a credentials block, the template
    from a template block, and the model (the local stand-in) answers every valid record."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var)
    creds, template = unique("creds"), unique("company-profile")
    monkeypatch.setenv(BLOCK_NAME_ENV, creds)
    OpenAICredentials(api_key="sk-from-block", base_url=llm.openai_base_url).save(creds)  # type: ignore[attr-defined]
    PromptTemplateBlock.from_file(TEMPLATE).save(template)
    try:
        state = run_pipeline(COMPANIES, f"block:{template}", tmp_path, id_column="company_id",
                             settings=ProcessSettings(use_cache=False))
    finally:
        OpenAICredentials.delete(creds)
        PromptTemplateBlock.delete(template)
    assert state.is_completed(), state.message
    summary = state.result()
    ids = assert_every_record_once(tmp_path, summary)
    assert sorted(ids["quarantined"]) == ["c006", "c007"]  # the block's `input` section validated them
    exported = pd.read_parquet(tmp_path / "exported.parquet")
    assert len(exported) == 6 and set(exported["_ai_status"]) == {"ok"}
    assert exported["summary"].notna().all() and set(exported["_template"]) == {"company-profile"}
