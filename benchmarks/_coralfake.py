"""An in-process fake LLM that answers Coral the way upstream's dummy Coral agents do.

Upstream's ``coral_mmlu_pro_dummy`` (fair-matrix 0.2.6, ``ts_interaction_dummy``) makes no LLM
call: a speaker's reply is 1024 characters +-20 % of a fixed text, and the matcher declares
agreement with probability 0.1 before the 3rd rated turn and 0.9 from it on (20 at most).
Our Coral decides agreement from the answers it extracts, so this transport writes replies
of the same length from the same text and ends each with an ``Answer:`` line that repeats the
partner's answer with those same probabilities (a different letter otherwise). Everything
above the socket (``LLMClient``, the runtime, Coral's parser extractor) is the real code.
"""
from __future__ import annotations

import json
import random
import re
import zlib

import httpx

BASE_TEXT = (
    "To find the amount of trade discount, we need to subtract the net price from the list price. "
    "List price equals four dollars and ninety five cents. Net price equals two dollars and ninety five cents. "
    "Trade discount equals list price minus net price. Therefore the trade discount is two dollars. "
    "So the amount of trade discount is two dollars. The correct answer is option I. "
    "Let me verify this calculation by working through the problem step by step. "
    "First we identify the given values in the problem. The list price is the original price before any discounts. "
    "The net price is what the customer actually pays after the discount is applied. "
    "To find the discount amount we simply subtract the net price from the list price. "
    "This gives us the total savings or discount that was applied to the purchase. "
    "In this case the calculation shows that the customer saved two dollars on this transaction. "
)
GENERATION_LENGTH, LENGTH_DELTA, EXPECTED_TURNS = 1024, 0.2, 3
LETTERS = "ABCDEFGHIJ"
_ANSWER = re.compile(r"Answer: ([A-J])\b")


def agree_probability(reply_number: int) -> float:
    """Upstream's dummy matcher: P(agreement) at its ``rated_turns`` = reply number."""
    return 0.1 if reply_number < EXPECTED_TURNS else 0.9


def reply(messages: list[dict]) -> tuple[str, int]:
    """The fake reply to a Coral reasoner's prompt and its completion tokens (chars / 4, as upstream)."""
    own = sum(1 for m in messages if m["role"] == "assistant")
    partner = sum(str(m.get("content") or "").count(" says:\n") for m in messages if m["role"] == "user")
    number = own + partner + 1
    options = _options(messages)
    rng = random.Random(zlib.crc32(json.dumps(messages[:2], sort_keys=True).encode()) + number)
    n = rng.randint(int(GENERATION_LENGTH * (1 - LENGTH_DELTA)), int(GENERATION_LENGTH * (1 + LENGTH_DELTA)))
    text = (BASE_TEXT * (n // len(BASE_TEXT) + 1))[:n].rstrip()
    previous = _ANSWER.findall(str(messages[-1].get("content") or ""))
    if previous and rng.random() < agree_probability(number):
        letter = previous[-1]
    else:
        choices = [c for c in LETTERS[:options] if not previous or c != previous[-1]]
        letter = rng.choice(choices)
    return f"{text}\nAnswer: {letter}", n // 4


def _options(messages: list[dict]) -> int:
    first_user = next(str(m.get("content") or "") for m in messages if m["role"] == "user")
    return len(re.findall(r"^[A-J]\. ", first_user, re.M)) or len(LETTERS)


def transport() -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        text, tokens = reply(body["messages"])
        return httpx.Response(200, json={
            "model": "coral-dummy", "system_fingerprint": "benchmarks coral dummy (simulated)",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4, "completion_tokens": tokens},
        })

    return httpx.MockTransport(handle)
