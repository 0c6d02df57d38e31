"""The pre-flight: what a run would ask the model and what that would cost, before it asks.

Every record's prompt is rendered as the run renders it. A prompt the answer cache holds costs
nothing; the others are projected. Tokens are estimated, since no offline tokenizer serves every
provider: input from each prompt's characters, at the ratio of tokens to characters that answers
already paid for showed (else about four characters a token), and output as long as those answers
were, else as the template's examples are, else at most `max_tokens` (an upper bound).
"""

from __future__ import annotations

import json
from statistics import fmean
from typing import Any

from pydantic import BaseModel

from augment_it.cache import AnswerCache
from augment_it.pricing import PriceTable
from augment_it.processing import ModelPlan, build_request, request_for
from augment_it.providers.base import CHARACTERS_PER_TOKEN
from augment_it.records import ID
from augment_it.templates import PromptTemplate, RenderError

SHOWN_PROMPTS = 3
SHOWN_REASONS = 5


class SamplePrompt(BaseModel):
    id: str
    system: str | None
    prompt: str  # the record's own turn, after any few-shot examples


class Preflight(BaseModel):
    provider: str
    model: str
    records: int
    answered: int  # by the answer cache: a run replays them for nothing
    to_ask: int
    unrenderable: int  # fail before any call: the prompt cannot render
    unrenderable_reasons: list[str]
    input_tokens: int  # projected, for the prompts to ask
    output_tokens: int
    cost_usd: float | None  # None: the model has no price
    basis: str  # what the token projection rests on
    output_bound: bool  # output counted at max_tokens: the cost is an upper bound
    prompts: list[SamplePrompt]
    skipped: str | None = None  # why the run would make no call at all (no key, provider none)

    def projection(self) -> str:
        """The projected tokens and cost of the prompts to ask, and what the estimate rests on."""
        cost = "cost unknown (model not in the price table)" if self.cost_usd is None \
            else f"{'at most ' if self.output_bound else ''}${self.cost_usd:.4f}"
        return (f"~{self.input_tokens:,} tokens in, ~{self.output_tokens:,} out, {cost} "
                f"(estimate: {self.basis})")

    def over_budget(self, max_cost_usd: float) -> str | None:
        """Why a run held to MAX_COST_USD must not start, or None."""
        if self.to_ask == 0 or self.skipped:
            return None
        if self.cost_usd is None:
            return (f"model {self.model} has no price, so the run's cost cannot be held to "
                    f"{usd(max_cost_usd)}: add its price with --prices")
        if self.cost_usd <= max_cost_usd:
            return None
        return (f"the {self.to_ask} prompts to ask would cost more than the run's max cost of "
                f"{usd(max_cost_usd)}: {self.projection()}; nothing was sent. `augment plan` shows what the "
                "run would ask; raise --max-cost to go on")

    def markdown(self) -> str:
        lines = [
            f"## Pre-flight: {self.provider} / {self.model}", "",
            *([f"No call will be made: {self.skipped}", ""] if self.skipped else []),
            "| records | answered before (free) | to ask | cannot render |", "|---|---|---|---|",
            f"| {self.records} | {self.answered} | {self.to_ask} | {self.unrenderable} |", "",
            f"Projected for the prompts to ask: {self.projection()}.",
        ]
        if self.unrenderable_reasons:
            lines += ["", "Records that would fail before any call:", ""]
            lines += [f"- {reason}" for reason in self.unrenderable_reasons]
        for prompt in self.prompts:
            lines += ["", f"### Prompt of record {prompt.id}", ""]
            if prompt.system:
                lines += ["System:", "", _quoted(prompt.system), ""]
            lines += [_quoted(prompt.prompt)]
        return "\n".join(lines)


def usd(amount: float) -> str:
    """An amount of dollars as a user would write it: $5, $0.25, $0.00001."""
    return "$" + f"{amount:.6f}".rstrip("0").rstrip(".")


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])


def records_to_ask(records: list[dict[str, Any]], template: PromptTemplate, plan: ModelPlan,
                   limit: int) -> list[dict[str, Any]]:
    """LIMIT of RECORDS whose prompt renders and is not answered yet, spread over them: the first
    rows of a sorted file may all be alike."""
    cache = plan.caller.cache if plan.caller is not None else None
    found: list[dict[str, Any]] = []
    for record in records:
        try:
            request = request_for(template, record, plan)
        except RenderError:
            continue
        if cache is None or cache.get(request.key()) is None:
            found.append(record)
    return [found[i * len(found) // limit] for i in range(min(limit, len(found)))]


def preflight(records: list[dict[str, Any]], template: PromptTemplate, prices: PriceTable,
              cache: AnswerCache | None, plan: ModelPlan | None = None) -> Preflight:
    """What a run of TEMPLATE over RECORDS would ask, given the answers CACHE holds and the run's
    model PLAN (which says why it would ask nothing, and which records it asks after a rejection)."""
    to_ask: list[int] = []  # each prompt's characters
    answered = 0  # by the cache
    sized: list[tuple[int, int, int]] = []  # characters, input and output tokens of those, where known
    unrenderable: list[str] = []
    prompts: list[SamplePrompt] = []
    for record in records:
        try:
            request = request_for(template, record, plan) if plan else build_request(template, record)
        except RenderError as exc:
            unrenderable.append(f"record {record.get(ID)}: {exc}")
            continue
        if len(prompts) < SHOWN_PROMPTS:
            prompts.append(SamplePrompt(id=str(record.get(ID)), system=request.system,
                                        prompt=request.messages[-1][1]))
        reply = cache.get(request.key()) if cache is not None else None
        if reply is None:
            to_ask.append(request.characters())
            continue
        answered += 1
        if reply.input_tokens is not None and reply.output_tokens is not None:
            sized.append((request.characters(), reply.input_tokens, reply.output_tokens))
    if sized:
        tokens_per_character = sum(p[1] for p in sized) / max(1, sum(p[0] for p in sized))
        output_each, bound = fmean(p[2] for p in sized), False
        basis = f"as for the {len(sized)} answer(s) to these prompts paid for before"
    else:
        tokens_per_character = 1 / CHARACTERS_PER_TOKEN
        output_each, output_basis, bound = _output_without_answers(template)
        basis = f"input at ~{CHARACTERS_PER_TOKEN:g} characters a token, output {output_basis}"
    input_tokens = round(sum(to_ask) * tokens_per_character)
    output_tokens = round(output_each * len(to_ask))
    return Preflight(
        provider=template.provider, model=template.model, records=len(records), answered=answered,
        to_ask=len(to_ask), unrenderable=len(unrenderable), unrenderable_reasons=unrenderable[:SHOWN_REASONS],
        input_tokens=input_tokens, output_tokens=output_tokens,
        cost_usd=prices.cost(template.model, input_tokens, output_tokens), basis=basis,
        output_bound=bound, prompts=prompts, skipped=plan.skip_reason if plan else None,
    )


def _output_without_answers(template: PromptTemplate) -> tuple[float, str, bool]:
    """Output tokens to expect per prompt before any was answered, what that rests on, and whether
    it is only a bound."""
    if template.examples:
        answers = [a if isinstance(a, str) else json.dumps(a) for a in (e.answer for e in template.examples)]
        each = min(template.max_tokens, fmean(len(a) for a in answers) / CHARACTERS_PER_TOKEN)
        return each, "as long as the template's example answers", False
    return float(template.max_tokens), f"at max_tokens ({template.max_tokens}): nothing answered yet", True
