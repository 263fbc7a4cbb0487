"""The filter's cheap signals: is a passage English prose, and is it likely to hold reasoning?

No model: counts over the text, so the filter runs at tens of thousands of documents per
second and only the survivors cost an LLM call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

STOPWORDS = frozenset(
    "a an the and or but of to in on at by for with from as is are was were be been being it its this that these "
    "those which who whom what when where how not no can could will would should may might must do does did has have "
    "had than then there their they them we you he she his her our your i if so such also into over under more most".split()
)
# Words that join claims into arguments: the web-text reasoning markers the paper's filter looks for.
CONNECTIVES = frozenset(
    "because therefore thus hence since consequently implies imply follows otherwise unless whereas suppose assume "
    "assuming given if then why reason so means proof prove shows show example instance however although".split()
)
STEP_WORDS = frozenset("first second third next finally step steps".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_MATH = re.compile(r"\d+(?:\.\d+)?|[=<>+*/^%]|\b(?:sum|product|equal|equals|ratio|probability|average|total)\b")
_CODE_LINE = re.compile(r"^\s*(?:>>>|\.\.\.|def |class |import |from \S+ import|return |[{}\[\]();]+$|#|@\w)")
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*] )", re.M)


@dataclass(frozen=True)
class FilterResult:
    keep: bool
    reason: str | None
    signals: dict[str, Any]


def signals(text: str) -> dict[str, Any]:
    words = _WORD.findall(text)
    lower = [w.lower() for w in words]
    n = max(len(words), 1)
    letters = [c for c in text if c.isalpha()]
    lines = [l for l in text.splitlines() if l.strip()]
    per100 = 100 / n
    connectives = sum(w in CONNECTIVES for w in lower) * per100
    math = min(len(_MATH.findall(text)) * per100, 10.0)
    steps = sum(w in STEP_WORDS for w in lower) * per100 + len(_NUMBERED.findall(text)) * per100
    return {
        "chars": len(text),
        "words": len(words),
        "ascii_letters": round(sum(c.isascii() for c in letters) / max(len(letters), 1), 3),
        "stopwords": round(sum(w in STOPWORDS for w in lower) / n, 3),
        "code_lines": round(sum(bool(_CODE_LINE.match(l)) for l in lines) / max(len(lines), 1), 3),
        # Densities per 100 words, squashed to [0, 1] with weights that favour connectives.
        "reasoning": round(min(1.0, 0.65 * min(connectives / 5, 1) + 0.2 * math / 10 + 0.15 * min(steps / 3, 1)), 3),
    }


def judge(text: str, cfg: Mapping[str, Any]) -> FilterResult:
    s = signals(text)
    min_chars, max_chars = int(cfg.get("min_chars", 200)), int(cfg.get("max_chars", 20000))
    if s["chars"] < min_chars:
        return FilterResult(False, f"too short ({s['chars']} < {min_chars} chars)", s)
    if s["chars"] > max_chars:
        return FilterResult(False, f"too long ({s['chars']} > {max_chars} chars)", s)
    if s["code_lines"] > float(cfg.get("max_code_lines", 0.4)):
        return FilterResult(False, f"mostly code ({s['code_lines']:.0%} of lines)", s)
    if s["ascii_letters"] < float(cfg.get("min_ascii_letters", 0.9)) or s["stopwords"] < float(cfg.get("min_stopwords", 0.15)):
        return FilterResult(False, f"not English prose (ascii letters {s['ascii_letters']}, stopwords {s['stopwords']})", s)
    threshold = float(cfg.get("min_reasoning", 0.45))
    if s["reasoning"] < threshold:
        return FilterResult(False, f"unlikely to hold reasoning ({s['reasoning']} < {threshold})", s)
    return FilterResult(True, None, s)
