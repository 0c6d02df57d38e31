"""`augment run`: the whole pipeline on one source."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any

import typer
from prefect.exceptions import TerminationSignal
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from augment_it import progress
from augment_it.cli.options import (
    ConcurrencyOpt,
    EncodingOpt,
    IdColumnOpt,
    ModelOpt,
    NoCacheOpt,
    OutOpt,
    PricesOpt,
    ProviderOpt,
    RetryRejectedOpt,
    SourceArg,
    TemplateOpt,
    UrlColumnOpt,
    call_policy,
    run_directory,
    source_and_encoding,
)
from augment_it.cli.terminal import console, fail
from augment_it.errors import InputNotice, UserInputError
from augment_it.export import destination_sink, shown_reason
from augment_it.layout import check_run_dir, filesystem
from augment_it.pricing import PriceTable
from augment_it.processing import apply_overrides
from augment_it.providers import provider_spec
from augment_it.review import TimeoutOutcome
from augment_it.run_lock import check_free
from augment_it.settings import ExportFormat, ProcessSettings, ReviewPolicy
from augment_it.sources import Source, open_source
from augment_it.sources.files import FileSet, FileSource
from augment_it.validation import import_great_expectations
from blocks.templates import load_prompt_template


def run(
    source: SourceArg,
    template: TemplateOpt,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    review: Annotated[ReviewPolicy, typer.Option(help="auto | ui | cli")] = "auto",
    approve_above: Annotated[float | None, typer.Option(
        help="Approve quality_score > S unreviewed; auto rejects the rest, ui/cli ask a human")] = None,
    out: OutOpt = "out",
    fmt: Annotated[ExportFormat, typer.Option("--format", help="parquet | csv | jsonl | xlsx")] = "parquet",
    concurrency: ConcurrencyOpt = 16,
    id_column: IdColumnOpt = None,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute to stay under")] = None,
    tpm: Annotated[float | None, typer.Option(help="Tokens per minute to stay under")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one answer")] = 60.0,
    no_cache: NoCacheOpt = False,
    prices: PricesOpt = None,
    max_cost: Annotated[float | None, typer.Option(
        min=0, help="Refuse to start the model calls if they are projected to cost more (USD)")] = None,
    review_timeout: Annotated[int, typer.Option(help="Seconds to wait for a reviewer")] = 24 * 3600,
    review_timeout_outcome: Annotated[TimeoutOutcome, typer.Option(
        help="When nobody reviews in time: reject-all (nothing exported) or approve-all")] = "reject-all",
    retry_rejected: RetryRejectedOpt = False,
    review_again: Annotated[bool, typer.Option(
        "--review-again", help="Decide every record anew, not only those new or changed since the last "
                               "review under --out")] = False,
    to: Annotated[str | None, typer.Option("--to", help="Also write approved records back to this URI "
                                           "(airtable://, nocodb://, databricks://)")] = None,
    url_column: UrlColumnOpt = None,
    encoding: EncodingOpt = None,
) -> None:
    """Collect SOURCE, augment it with TEMPLATE, review, and export under --out."""
    source, encoding = source_and_encoding(source, url_column, encoding)
    call = call_policy(concurrency=concurrency, rpm=rpm, tpm=tpm, timeout=timeout)
    settings = ProcessSettings(provider=provider, model=model, use_cache=not no_cache, prices_path=prices,
                               call=call, max_cost_usd=max_cost, retry_rejected=retry_rejected)
    provider = check_inputs(source, template, settings, out, to, encoding)
    from augment_it.cli.local_server import prefect_api
    from flows.pipeline import augment_pipeline

    raise_on_sigterm()
    run_dir = run_directory(out)
    try:
        with (prefect_api(while_starting=partial(import_run_libraries, provider)),
              ProgressBar(console) as bar, cancelling_review_on_exit(run_dir)):
            progress.report_to(bar)
            state = asyncio.run(augment_pipeline(
                source=source, template=template, out=run_dir,
                review_policy=review, approve_above=approve_above, fmt=fmt, id_column=id_column,
                settings=settings, review_timeout=review_timeout, destination=to, return_state=True,
                review_timeout_outcome=review_timeout_outcome, review_again=review_again, encoding=encoding,
            ))
            progress.report_to(None)
    except UserInputError as exc:  # no temporary server could start
        fail(str(exc))
    except (KeyboardInterrupt, TerminationSignal) as exc:  # Ctrl-C; SIGTERM, which Prefect raises as this
        terminated = isinstance(exc, TerminationSignal)
        stopped, code = ("terminated", 128 + exc.signal) if terminated else ("interrupted", 130)
        kept = "finished chunks are kept" if no_cache else "every answer received is kept"
        console.print(f"[yellow]{stopped}[/yellow]: {kept}; the same command goes on from there "
                      "without paying for them again")
        raise typer.Exit(code) from None
    if not state.is_completed():
        fail(str(state.message))
    summary = state.result()
    print_summary(summary, out)
    if not summary["balanced"]:
        raise typer.Exit(1)


@contextmanager
def cancelling_review_on_exit(out: str) -> Iterator[None]:
    """A command that ends while its run waits for review could leave that review run paused on the
    server: `augment review list` showed it waiting and `approve` took a decision nobody would act
    on. Prefect marks it crashed on a Ctrl-C, but not when the Ctrl-C also ended the command's
    `| tee` (its crash report then fails on the closed pipe). Whatever ends the command, the run
    still paused is cancelled (while the server still runs), saying why."""
    try:
        yield
    except BaseException:
        from tasks.review import cancel_abandoned_review

        with contextlib.suppress(Exception):  # best effort: the command is ending either way
            asyncio.run(asyncio.wait_for(cancel_abandoned_review(
                out, "augment run was stopped while it waited for review; "
                "run the same command again to review"), timeout=10))
        raise


def raise_on_sigterm() -> None:
    """SIGTERM, and SIGHUP (the terminal closed), raise TerminationSignal, which `run` answers
    like Ctrl-C.

    Prefect does the same for SIGTERM inside a flow run, but after its crash handling it sends the
    signal again to the handler it found there: Python's default killed the command before it
    could say what is kept (exit -15). Python's default for SIGHUP ends the command on the spot,
    leaving a review it waited for paused, to be approved in the UI for nothing."""
    def terminate(signum: int, frame: object) -> None:
        raise TerminationSignal(signal=signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)


def check_inputs(source: str, template: str, settings: ProcessSettings, out: str,
                 destination: str | None = None, encoding: str | None = None) -> str:
    """Fail before any flow starts on what is plainly wrong: a missing file, or a small one that
    cannot be read, an unusable template or price file, a template parameter the provider used
    (the template's or --provider) would refuse, an --out that is a file or that another run works
    in, a destination that cannot be written (found out at export, the model would be paid).

    Returns the provider the run uses."""
    try:
        check_run_dir(out)
        check_free(out)
        read_if_small(open_source(source, encoding))
        prompt = apply_overrides(load_prompt_template(template), settings, origin=template)
        PriceTable.load(settings.prices_path)
        if destination:
            destination_sink(destination, list(prompt.output_fields)).check()
    except UserInputError as exc:
        fail(str(exc))
    return prompt.provider


def import_run_libraries(provider: str) -> None:
    """Import what the run's stages would import on their first record (GX's 1.2 s, an SDK's
    0.4 s): while a temporary server starts, this core waits for it anyway."""
    import_great_expectations()
    if provider != "none":
        importlib.import_module(provider_spec(provider).module)


# Files up to this size are read once before the run too: a repeated header, an empty file or a
# wrong encoding is then told at once, not after the temporary server has started and Prefect has
# logged it at every level of the run. Bigger ones are not read twice.
PREFLIGHT_READ_BYTES = 16 * 2**20


def read_if_small(source: Source) -> None:
    """Read a small file source for its errors only (what it would warn about, the run says)."""
    if isinstance(source, FileSource):
        files = [source]
    elif isinstance(source, FileSet):
        files = source.files
    else:
        return  # a store or the web: reading it is the run's work
    if any(f.kind == "markdown" for f in files):
        return  # a note that cannot be read is quarantined, never a refused source
    if sum(_size(f.uri) for f in files) <= PREFLIGHT_READ_BYTES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputNotice)
            source.read()


def _size(uri: str) -> int:
    fs, path = filesystem(uri)
    return fs.size(path) or 0


def print_summary(summary: dict[str, Any], out: str) -> None:
    table = Table(title=f"augment run → {out}")
    table.add_column("outcome")
    table.add_column("records", justify="right")
    for key in ("collected", "quarantined", "processed", "failed", "approved", "rejected", "exported"):
        table.add_row(key, str(summary[key]))
    console.print(table)
    tokens, cost = summary["tokens"], summary["cost_usd"]
    cached = tokens.get("cached_input")
    cached = f" ({cached} from the provider's prompt cache)" if cached else ""
    console.print(f"paid this run: {tokens['input']} tokens in{cached}, {tokens['output']} out; cost: "
                  + (f"${cost:.4f}" if cost is not None else "unknown (model not in the price table)"))
    if unknown := summary.get("records_without_usage"):
        console.print(f"[yellow]{unknown} record(s) answered without token usage[/yellow] "
                      "(the provider sent none): not in these totals")
    ai = summary.get("ai", {})
    if ai.get("status") == "skipped":
        console.print(f"[yellow]AI step skipped:[/yellow] {escape(str(ai.get('reason')))}")
        console.print("Ran without a model: collect, validation, enrichers (word count, reading time, "
                      "language, quality score), review and export.")
    else:
        calls = summary["provider_calls"]
        answers = [f"{calls.get('answered', 0)} answered", f"{calls.get('cache_hits', 0)} from the cache"]
        if kept := summary.get("answers_kept"):
            answers.append(f"{kept} kept from the last run under {out}")
        if retried := summary.get("retried_rejected"):
            answers.append(f"{retried} asked after the answer a reviewer rejected")
        console.print(
            f"AI step: {ai.get('provider')} / {ai.get('model')}: {', '.join(answers)}, "
            f"{calls.get('retries', 0)} retries ({calls.get('rate_limited', 0)} rate-limited); "
            f"errors: {calls.get('errors') or 'none'}",
            markup=False)  # errors quote the provider's text
        if not_sent := calls.get("not_sent"):
            console.print(f"[red]{not_sent} call(s) not sent[/red]: the provider could not be reached, or "
                          "refused the key, the model or the quota, as it would every call; a rerun "
                          "sends them")
    for field, counts in summary.get("labels", {}).items():
        console.print(f"exported {field}: " + ", ".join(f"{label} {n}" for label, n in counts.items()),
                      markup=False)
    if earlier := summary["review"].get("earlier_decisions"):
        console.print(f"review: {earlier} record(s) kept the decision a reviewer made in an earlier run "
                      "(--review-again to decide them anew)")
    for reason, count in summary.get("failure_reasons", {}).items():
        console.print(f"  failed {count}x: {shown_reason(reason)}", markup=False)
    for reason in summary.get("quarantine_reasons", []):
        console.print(f"  quarantined: {shown_reason(reason)}", markup=False)
    if (more := summary["quarantined"] - len(summary.get("quarantine_reasons", []))) > 0:
        console.print(f"  ({more} more quarantined, each with its reason)")
    console.print(f"files: {', '.join(summary['files'].values())} and {out}/summary.json", markup=False)
    if destination := summary.get("destination"):
        console.print(f"written to {escape(destination['uri'])}: {destination['updated']} updated, "
                      f"{destination['created']} created, {destination['failed']} failed")


class ProgressBar:
    """The process stage's records as a bar on the terminal (rich draws nothing when piped), and
    what the run tells its user (how to review it)."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(TextColumn("process"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), console=console)
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, total: int) -> None:
        self._task = self._bar.add_task("process", total=total)

    def advance(self, done: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, done)

    def tell(self, message: str) -> None:
        self._bar.console.print(f"[bold yellow]{escape(message)}[/bold yellow]")
