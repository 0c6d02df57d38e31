"""Enrichers that need no model: word count, reading time, language and a quality score.

The quality score (0..1) is what `--approve-above` compares against:
0.4 x completeness (share of the record's input fields that are filled)
+ 0.3 x length (words in the record's text, saturating at 100)
+ 0.3 x AI outcome (1 answered, 0.5 no model used, 0 failed).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from augment_it.records import is_missing, user_fields

WORDS_PER_MINUTE = 230
AI_WEIGHT = {"ok": 1.0, "skipped": 0.5, "failed": 0.0}
ENRICHED_FIELDS = ("word_count", "reading_time_min", "language", "quality_score")


def record_text(record: dict[str, Any]) -> str:
    """The text a record is about: its Markdown body if it has one, else its text fields."""
    body = record.get("body")
    if isinstance(body, str) and body.strip():
        return body
    return " ".join(v for v in user_fields(record).values() if isinstance(v, str))


# Below this probability the text is names and places rather than sentences, and the guess is
# noise ('Alan Turing Manchester': Bikol at 0.12); a sentence of a few words scores 0.35 and up.
MIN_LANGUAGE_PROBABILITY = 0.3

_language_model: Future[Any] | None = None
_language_model_guard = threading.Lock()


def _language_identifier() -> Any:
    """py3langid's model, answering with probabilities (its own `classify` gives raw scores)."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def load_language_model() -> Future[Any]:
    """The language identifier, loading in a background thread from the first call on.

    Loading takes half a second to a second of CPU. Started before the first model calls, it
    overlaps their network wait."""
    global _language_model
    with _language_model_guard:
        if _language_model is None:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="language-model")
            _language_model = pool.submit(_language_identifier)
            pool.shutdown(wait=False)
        return _language_model


async def language_model_ready() -> None:
    """Wait for the language model without holding up the event loop's other calls."""
    model = load_language_model()
    if not model.done():
        await asyncio.wrap_future(model)


def guess_language(text: str) -> str | None:
    """The text's language (ISO 639-1), or None when it is too short or too unlike any to tell."""
    if len(text.split()) < 3:
        return None
    language, probability = load_language_model().result().classify(text[:2000])
    return str(language) if probability >= MIN_LANGUAGE_PROBABILITY else None


def enrich(record: dict[str, Any], input_fields: list[str], ai_status: str) -> dict[str, Any]:
    text = record_text({k: record.get(k) for k in input_fields})
    words = len(text.split())
    filled = sum(1 for k in input_fields if not is_missing(record.get(k)) and record.get(k) != "")
    completeness = filled / len(input_fields) if input_fields else 0.0
    score = 0.4 * completeness + 0.3 * min(words / 100, 1.0) + 0.3 * AI_WEIGHT.get(ai_status, 0.0)
    return {
        "word_count": words,
        "reading_time_min": round(words / WORDS_PER_MINUTE, 2),
        "language": guess_language(text),
        "quality_score": round(score, 3),
    }
