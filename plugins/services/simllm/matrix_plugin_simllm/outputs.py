"""What a simulated reply holds beyond its filler text: several choices (``n``), token
logprobs with ``top_logprobs`` alternatives, reasoning content, and JSON that satisfies the
request's ``response_format`` schema (as engines with guided decoding return).

Every value is drawn from the replica's seeded stream, so a run is reproducible.
"""
from __future__ import annotations

import json
import math
import random
from typing import Any, Mapping

from .engine import _VOCABULARY, filler

MAX_TOP_LOGPROBS = 20


def check_request(body: Mapping[str, Any]) -> str | None:
    """Why the extra options of a request are invalid, or None."""
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
        return f"n must be an integer in 1..128, got {n!r}"
    top = body.get("top_logprobs")
    if top is not None:
        if not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
            return f"top_logprobs must be an integer in 0..{MAX_TOP_LOGPROBS}, got {top!r}"
        if not body.get("logprobs"):
            return "top_logprobs needs logprobs=true"
    return None


def json_schema_of(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, Mapping) else {}
    return None


def instance(schema: Mapping[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A value that satisfies the common JSON-Schema keywords (type, enum, const, properties,
    items, min/max bounds, anyOf/oneOf); filler words stand in for free text."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(list(schema["enum"]))
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return instance(schema[key][0], rng, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: instance(v, rng, depth + 1) for k, v in props.items()} if depth < 8 else {}
    if kind == "array":
        lo = int(schema.get("minItems", 1))
        hi = max(lo, int(schema.get("maxItems", max(lo, 3))))
        return [instance(schema.get("items") or {}, rng, depth + 1) for _ in range(rng.randint(lo, hi))] if depth < 8 else []
    if kind in ("integer", "number"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (1 if "exclusiveMinimum" in schema else 0))
        hi = schema.get("maximum", lo + 100)
        value = rng.randint(math.ceil(lo), math.floor(hi)) if math.ceil(lo) <= math.floor(hi) else lo
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    words = max(1, int(schema.get("minLength", 0)) // 4 + rng.randint(2, 6))
    text = filler(words, rng.randrange(4096))
    return text[: schema["maxLength"]] if "maxLength" in schema else text


def token_logprobs(text: str, top: int, rng: random.Random) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs.content`` for ``text``: each token (a word, with its leading
    space), its log probability, and ``top`` alternatives in decreasing order (itself first)."""
    out = []
    for i, word in enumerate(text.split(" ")):
        token = word if i == 0 else " " + word
        logprob = -rng.expovariate(4.0)  # most sampled tokens are likely ones
        entry: dict[str, Any] = {"token": token, "logprob": round(logprob, 6), "bytes": list(token.encode())}
        if top:
            others = [w for w in _VOCABULARY if w != word]
            alts = [(token, logprob)]
            lp = logprob
            for alt in rng.sample(others, min(top - 1, len(others))):
                lp -= rng.expovariate(1.0)
                alts.append(((" " if i else "") + alt, lp))
            entry["top_logprobs"] = [{"token": t, "logprob": round(p, 6), "bytes": list(t.encode())} for t, p in alts]
        else:
            entry["top_logprobs"] = []
        out.append(entry)
    return out


def reply_json(body: Mapping[str, Any], rng: random.Random) -> str | None:
    schema = json_schema_of(body)
    return None if schema is None else json.dumps(instance(schema, rng))
