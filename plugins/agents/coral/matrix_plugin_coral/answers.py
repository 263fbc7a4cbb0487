"""Reading a final answer out of free text, and comparing answers.

Answers are canonical strings: an option letter (``"B"``) for multiple choice, a number
without padding (``"42"``, ``"0.75"``) or lower-cased text otherwise. Extraction tries the
most explicit signals first (``\\boxed{}``, "the answer is ...", bold) and falls back to the
end of the reply, where a model that ignores the format usually states its conclusion.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

LETTERS = "ABCDEFGHIJ"  # MMLU-Pro has up to ten options

_NUMBER = re.compile(
    r"(?<![\w.])([-−])?\$?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?:\s*/\s*(\d+)(?![\d.]))?(?!\d)"
)
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split()
)} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100}

# "the final answer is", "Answer:", "the correct option would be", "the answer to this question is".
_MARKER = re.compile(
    r"(?:\b(?:final|correct|right|my|our|the|your)\s+)?"
    r"\b(?:answer|option|choice|solution)(?:\s+to\s+(?:this|the)\s+(?:question|problem))?"
    r"(?:\s*(?:is|would\s+be|should\s+be|must\s+be|will\s+be|remains|stays)\s*:?|\s*[:=])\s*",
    re.I,
)
# "I choose B", "I'll go with (C)", "option D is correct".
_CHOOSE = re.compile(r"\bI(?:\s+will|'ll)?\s+(?:choose|pick|select|go\s+with)\s*:?\s*", re.I)
_OPTION_IS = re.compile(r"\b(?:option|choice)\s*\(?([A-Ja-j])\)?\s+is\s+(?:the\s+)?(?:correct|right|true)\b", re.I)
# "not B, but D" / "not 12 but 13": the answer follows; a bare "not ..." states none.
_NEGATION = re.compile(r"^not\s+[^,;.]+?(?:\s*[,;]\s*|\s+(?=but\b|rather\b))(?:but\s+|rather\s+|it\s+is\s+|it'?s\s+)*(?=\S)", re.I)
_LETTER = re.compile(r"(?:(?:option|choice|letter)\s*)?([\(\[])?([A-Ja-j])(?(1)[\)\]]|(?![A-Za-z0-9'’]))", re.I)
# After "your answer is": a verdict on the partner, not an answer.
_NOT_AN_ANSWER = re.compile(r"(?:correct|right|wrong|incorrect|as follows|below|above|that|not|unclear|unknown|the same|also|still)\b", re.I)
_OPTION_LINE = re.compile(r"^\s*(?:options:\s*)?\(?[A-J][.):]\s+\S", re.I)


def parse_number(text: str) -> float | None:
    """The value of ``text`` if it is just a number ("1,234", "$12.50", "3/4", "25%", "twelve")."""
    s = text.strip().rstrip(".!;:,").strip().rstrip("%").strip()
    if s.casefold() in _WORDS:
        return float(_WORDS[s.casefold()])
    m = _NUMBER.fullmatch(s)
    return _number_value(m) if m else None


def _number_value(m: re.Match) -> float | None:
    value = float(m.group(2).replace(",", ""))
    if m.group(3):
        if int(m.group(3)) == 0:
            return None
        value /= int(m.group(3))
    return -value if m.group(1) else value


def format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


def _norm_text(text: str) -> str:
    return " ".join(re.sub(r"[^\w%$.\-/ ]+", " ", text.casefold()).split()).strip(" .")


def normalize(answer: object, options: Sequence[str] | None = None) -> str | None:
    """Canonical form of a stated answer: option letter, number, or lower-cased text."""
    if answer is None:
        return None
    if isinstance(answer, bool):
        return str(answer).casefold()
    if isinstance(answer, (int, float)):
        return format_number(float(answer)) if math.isfinite(answer) else None
    s = _clean(str(answer)).strip().rstrip(".!?;:,").strip()
    if not s:
        return None
    m = re.fullmatch(r"\(?([A-Ja-j])\)?", s)
    if m and options and LETTERS.index(m.group(1).upper()) < len(options):
        return m.group(1).upper()
    value = parse_number(s)
    if value is not None:
        return format_number(value)
    return _norm_text(s) or None


def same_answer(a: str | None, b: str | None) -> bool:
    """Answers agree: letters case-insensitively, numbers by value; ``None`` agrees with nothing."""
    if a is None or b is None:
        return False
    x, y = parse_number(a), parse_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
    return _norm_text(a) == _norm_text(b)


# --- extraction ---------------------------------------------------------------------------
def _clean(text: str) -> str:
    """Markdown emphasis and LaTeX wrappers hide the answer from the patterns below."""
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    text = text.replace("\\(", " ").replace("\\)", " ").replace("\\[", " ").replace("\\]", " ").replace("\\%", "%").replace("\\$", "$")
    text = re.sub(r"\$([^$\n]*[^\d\s$][^$\n]*)\$", r"\1", text)  # $x = 4$, not "$12 and $15"
    # A copied template placeholder ("Answer: <option letter>") states nothing; "<B>" does.
    text = re.sub(r"<([^<>\n]{1,40})>", lambda m: m.group(1) if len(m.group(1).strip()) <= 2 or parse_number(m.group(1)) is not None else " ", text)
    return re.sub(r"\*\*|__|`|(?<!\w)\*|\*(?!\w)", "", text)


def _boxed(text: str) -> list[str]:
    spans = []
    for m in re.finditer(r"\\boxed\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            spans.append(text[m.end() : i - 1])
    return spans


def _until_sentence_end(text: str) -> str:
    line = text.split("\n", 1)[0]
    m = re.search(r"[.!?;](?:\s|$)", line)
    return line[: m.start()] if m else line


def read_choice(span: str, options: Sequence[str]) -> str | None:
    """The option a short span names: by letter, by its text, or by its number."""
    span = _NEGATION.sub("", _clean(span).strip(), count=1)
    m = _LETTER.match(span)
    if m:
        letter, bracketed = m.group(2), bool(m.group(1))
        rest = span[m.end() :]
        prose = re.match(r"\s+[a-z]", rest) is not None
        if not bracketed and (letter.islower() or letter == "I"):
            # "a prime number", "I think so", "b because ...": words, not options.
            # A lower-case letter counts only alone or before punctuation ("b.", "b)").
            if prose or (rest.strip() and not re.match(r"\s*[.,;:!)\]]", rest) and letter.islower()):
                letter = ""
        if letter and LETTERS.index(letter.upper()) < len(options):
            return letter.upper()
    return _option_by_text(span, options)


def _option_by_text(span: str, options: Sequence[str]) -> str | None:
    text = _norm_text(span)
    if not text:
        return None
    found: list[tuple[int, int, int]] = []  # (position, -length, option index)
    for i, option in enumerate(options):
        opt = _norm_text(str(option))
        if not opt:
            continue
        if opt == text:
            return LETTERS[i]
        m = re.search(r"(?<![\w.])" + re.escape(opt) + r"(?![\w])", text)
        if m:
            found.append((m.start(), -len(opt), i))
        value = parse_number(str(option))
        if value is not None:
            for n in _NUMBER.finditer(text):
                if _number_value(n) == value:
                    found.append((n.start(), -len(opt), i))
                    break
    if not found and len(text.split()) >= 2:
        # "cannot be determined" for "It cannot be determined": a shortened option text.
        inside = [i for i, option in enumerate(options) if text in _norm_text(str(option))]
        return LETTERS[inside[0]] if len(inside) == 1 else None
    if not found:
        return None
    found.sort()
    best = found[0]
    # Two different options starting at the same place and equally long: ambiguous.
    if any(f[:2] == best[:2] and f[2] != best[2] for f in found[1:]):
        return None
    return LETTERS[best[2]]


def read_free(span: str, allow_text: bool = True) -> str | None:
    """A number in the span, else (after a marker) a short text answer."""
    span = _NEGATION.sub("", _clean(span).strip(), count=1)
    span = re.sub(r"^(?:=|approximately|about|exactly)\s*", "", span, flags=re.I)
    m = _NUMBER.search(span)
    if m:
        value = _number_value(m)
        if value is not None:
            return format_number(value)
    sentence = _until_sentence_end(span).strip().strip("\"'“”")
    if _NOT_AN_ANSWER.match(sentence):
        return None
    words = sentence.casefold().split()
    if 1 <= len(words) <= 2 and words[0].strip(".,;:!") in _WORDS:  # "twelve", "twelve apples"; not "one of them"
        return format_number(_WORDS[words[0].strip(".,;:!")])
    if allow_text and sentence and len(sentence.split()) <= 6:
        return _norm_text(sentence) or None
    return None


def read_answer(span: str, options: Sequence[str] | None) -> str | None:
    return read_choice(span, options) if options else read_free(span)


def extract_answer(text: str | None, options: Sequence[str] | None = None) -> str | None:
    """The final answer a reply gives, canonical, or ``None`` when it states none."""
    if not text or not text.strip():
        return None
    options = list(options or [])
    for span in reversed(_boxed(text)):
        if (answer := read_answer(span, options)) is not None:
            return answer
    clean = _clean(text)
    spans = [(m.end(), clean[m.end() :]) for m in _MARKER.finditer(clean)]
    if options:
        spans += [(m.end(), clean[m.end() :]) for m in _CHOOSE.finditer(clean)]
        spans += [(m.end(), m.group(1)) for m in _OPTION_IS.finditer(clean)]
    for _, span in sorted(spans, key=lambda s: s[0], reverse=True):
        if (answer := read_answer(_until_sentence_end(span) or span, options)) is not None:
            return answer
    for span in reversed(re.findall(r"\*\*([^*\n]{1,40})\*\*", text)):
        if span.strip().endswith(":"):
            continue  # a heading ("**Step 1:**"), not an answer
        answer = read_choice(span, options) if options else read_free(span, allow_text=False)
        if answer is not None:
            return answer
    return _fallback_choice(clean, options) if options else _fallback_number(clean)


def _fallback_choice(text: str, options: Sequence[str]) -> str | None:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1].strip()
    if sum(bool(_OPTION_LINE.match(line)) for line in lines) >= 2 and _OPTION_LINE.match(last):
        return None  # the reply ends by listing the options: no choice was made
    m = re.fullmatch(r"(?:(?:option|choice)\s*)?\(?([A-Ja-j])\)?[.!]?", last, re.I) or re.search(
        r"(?<![A-Za-z'’])\(?([A-HJ])\)?[.!]?$", last  # "... so it must be C." ("I" there is a pronoun)
    )
    letters = [m.group(1)] if m else [a or b for a, b in reversed(re.findall(r"\(([A-J])\)|\b(?:option|choice)\s+([A-J])\b", last, re.I))]
    # Small models often lead with the option, MMLU style: "A. Both yes and no", "B is true."
    if lead := re.match(r"\(?([A-J])(?:[.):]\s|\)?\s+is\b(?!\s+(?:not|wrong|incorrect)\b)|\)?[.!]?$)", lines[0].strip()):
        letters.append(lead.group(1))
    for letter in letters:
        if LETTERS.index(letter.upper()) < len(options):
            return letter.upper()
    return _unique_option(last, options)


_AGREE = re.compile(
    r"\b(?:I(?:\s+fully|\s+completely)?\s+agree|you(?:'re|\s+are)\s+(?:right|correct)|(?:that|this)(?:'s|\s+is)\s+(?:right|correct)"
    r"|\w+(?:'s answer)?\s+is\s+(?:right|correct))\b",
    re.I,
)
_DISSENT = re.compile(r"\b(?:disagree|wrong|incorrect|mistake|not\s+(?:right|correct)|isn't\s+(?:right|correct))\b", re.I)


def states_agreement(text: str | None) -> bool:
    """The reply endorses the partner ("Bob is right.", "I agree") without saying the contrary."""
    return bool(text) and _AGREE.search(text) is not None and _DISSENT.search(text) is None


def _unique_option(line: str, options: Sequence[str]) -> str | None:
    text = _norm_text(line)
    hits = {
        i for i, option in enumerate(options)
        if (opt := _norm_text(str(option))) and re.search(r"(?<![\w.])" + re.escape(opt) + r"(?![\w])", text)
    }
    return LETTERS[hits.pop()] if len(hits) == 1 else None


def _fallback_number(text: str) -> str | None:
    numbers = [v for m in _NUMBER.finditer(text) if (v := _number_value(m)) is not None]
    return format_number(numbers[-1]) if numbers else None
