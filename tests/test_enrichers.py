from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from augment_it.enrichers import enrich

ROOT = Path(__file__).resolve().parent.parent


def test_enrichers_count_words_guess_language_and_score() -> None:
    record = {"name": "Acme", "about": "A small company that makes very good tools for gardens", "site": None}
    out = enrich(record, ["name", "about", "site"], "ok")
    assert out["word_count"] == 11
    assert out["language"] == "en"
    # 0.4 x 2 of 3 fields filled + 0.3 x 11/100 words + 0.3 x answered
    assert out["quality_score"] == round(0.4 * 2 / 3 + 0.3 * 0.11 + 0.3, 3)


def test_a_language_is_named_only_when_the_text_tells() -> None:
    """Names and places are no sentence: 'Alan Turing Manchester' was guessed Bikol ('bcl') and
    'Acme Robotics London UK' Occitan, unknown codes in a column a team filters on."""
    for text in ("Alan Turing Manchester", "Acme Robotics London UK", "Börse AG Frankfurt"):
        assert enrich({"text": text}, ["text"], "ok")["language"] is None, text
    for text, language in (("Computer scientist who worked on COBOL and compilers", "en"),
                           ("Hola, me llamo Juan y vivo en Madrid", "es"),
                           ("Entreprise française qui fabrique des robots", "fr")):
        assert enrich({"text": text}, ["text"], "ok")["language"] == language, text


# In a fresh process, so the model is still loading when the waiting starts.
WAIT_PROBE = """
import asyncio
from augment_it.enrichers import language_model_ready, load_language_model

async def main():
    ticks = 0
    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
    ticker = asyncio.create_task(tick())
    load_language_model()
    await language_model_ready()
    ticker.cancel()
    print(ticks)

asyncio.run(main())
"""


def test_waiting_for_the_language_model_leaves_the_event_loop_running() -> None:
    """Answers that arrive while the model loads must not stall every other call's progress."""
    done = subprocess.run([sys.executable, "-c", WAIT_PROBE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert int(done.stdout.split()[-1]) >= 5  # loading takes 0.5-1 s; 10 ms ticks went on meanwhile
