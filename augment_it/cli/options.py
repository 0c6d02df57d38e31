"""Options that `augment run` and `augment plan` share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from augment_it.calling import CallPolicy
from augment_it.cli.terminal import fail
from augment_it.sources.web import web_source_uri

SourceArg = Annotated[str, typer.Argument(help="File, folder, glob ('data/*.csv') or URI to read")]
TemplateOpt = Annotated[str, typer.Option("--template", "-t", help="Prompt template (YAML)")]
ProviderOpt = Annotated[str | None, typer.Option(help="openai | anthropic | groq | none")]
ModelOpt = Annotated[str | None, typer.Option(help="Model name, overrides the template's")]
OutOpt = Annotated[str, typer.Option(help="Output directory (or fsspec URL)")]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="Model calls in flight at once")]
IdColumnOpt = Annotated[str | None, typer.Option(help="Column holding each record's id")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Ask again even if answered")]
PricesOpt = Annotated[str | None, typer.Option(help="YAML prices per 1M tokens")]
UrlColumnOpt = Annotated[str | None, typer.Option(
    help="Fetch the web page at the URL in this column of SOURCE and add its text")]
RetryRejectedOpt = Annotated[bool, typer.Option(
    "--retry-rejected", help="Ask the model again about the records a reviewer rejected under --out, "
                             "showing it the rejected answer and the reviewer's comment")]
EncodingOpt = Annotated[str | None, typer.Option(
    help="Text encoding of SOURCE's files if not UTF-8 (cp1252: Excel's plain \"CSV\" on Windows)")]


def source_and_encoding(source: str, url_column: str | None, encoding: str | None) -> tuple[str, str | None]:
    """SOURCE as the run reads it: with --url-column, the web source reading SOURCE's file itself,
    in the encoding its URI names."""
    web_source = web_source_uri(source, url_column, encoding)
    return (web_source, None) if web_source != source else (source, encoding)


def call_policy(**options: float | None) -> CallPolicy:
    """The call options, or exit naming the one out of range."""
    try:
        return CallPolicy(**options)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"--{first['loc'][0]} {first['input']}: {first['msg']}")


def run_directory(out: str) -> str:
    """--out as the flows take it: a local path normalised (no trailing slash), a URL as given."""
    return out if "://" in out else str(Path(out))
