"""Generates Coral's offline question set: verifiable items in MMLU-Pro's schema.

    python plugins/agents/coral/scripts/make_questions.py            # rewrites the shipped file
    python plugins/agents/coral/scripts/make_questions.py --seed 7 --out /tmp/q.jsonl

Every answer is computed here, so correctness is checked without any download. The same
seed always gives the same bytes (a test holds the shipped file to that). Items are mixed
before numbering, so any prefix (``dataset.limit=24``) holds every family.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any, Callable

LETTERS = "ABCDEFGHIJ"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "matrix_plugin_coral" / "data" / "questions.jsonl"
SRC = "coral-synthetic"

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Milo", "Nia", "Omar", "Pia"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "shells", "cards", "coins"]
CREATURES = ["bloops", "razzies", "lazzies", "wugs", "glims", "tovs", "zorps", "fips", "dax", "norks"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


# --- free-form word problems: the answer is a number ---------------------------------
def _add(r: random.Random) -> tuple[str, int]:
    name, item, a, b = r.choice(NAMES), r.choice(ITEMS), r.randint(5, 60), r.randint(3, 40)
    return f"{name} has {a} {item}. A friend gives {name} {b} more. How many {item} does {name} have now?", a + b


def _sub(r: random.Random) -> tuple[str, int]:
    name, other, item = *r.sample(NAMES, 2), r.choice(ITEMS)
    a = r.randint(20, 90)
    b = r.randint(3, a - 5)
    return f"{name} had {a} {item} and gave {b} of them to {other}. How many {item} does {name} have left?", a - b


def _mul(r: random.Random) -> tuple[str, int]:
    item, a, b = r.choice(ITEMS), r.randint(3, 12), r.randint(2, 9)
    return f"A box holds {a} {item}. How many {item} are there in {b} full boxes?", a * b


def _div(r: random.Random) -> tuple[str, int]:
    item, each, kids = r.choice(ITEMS), r.randint(2, 12), r.randint(2, 8)
    return f"{each * kids} {item} are shared equally among {kids} children. How many {item} does each child get?", each


def _two_step(r: random.Random) -> tuple[str, int]:
    name, a = r.choice(NAMES), r.randint(30, 100)
    b = r.randint(5, a // 2)
    c = r.randint(2, a - b - 1)
    return f"{name} has {a} dollars, spends {b} dollars on a book and {c} dollars on lunch. How many dollars are left?", a - b - c


def _rate(r: random.Random) -> tuple[str, int]:
    speed, hours = r.choice([40, 45, 50, 60, 70, 80, 90]), r.randint(2, 6)
    return f"A train travels {speed} kilometres every hour. How many kilometres does it travel in {hours} hours?", speed * hours


def _price(r: random.Random) -> tuple[str, int]:
    price, count = r.randint(2, 15), r.randint(3, 12)
    return f"One notebook costs {price} dollars. How many dollars do {count} notebooks cost?", price * count


def _twice(r: random.Random) -> tuple[str, int]:
    name, age, factor = r.choice(NAMES), r.randint(4, 30), r.choice([2, 3])
    word = {2: "twice", 3: "three times"}[factor]
    return f"{name} is {age} years old. {name}'s aunt is {word} as old. How old is the aunt?", age * factor


FREE: list[Callable[[random.Random], tuple[str, int]]] = [_add, _sub, _mul, _div, _two_step, _rate, _price, _twice]


# --- multiple choice ------------------------------------------------------------------
def _numeric_options(r: random.Random, answer: int, count: int) -> list[str]:
    """Near misses a careless solver would give (off by one, ten, a digit), all distinct."""
    pool = {answer + d for d in (-10, -2, -1, 1, 2, 10, 11, -11, 3, -3, 20, -20, 5, -5)}
    swapped = int(str(answer)[::-1]) if abs(answer) >= 10 else None
    if swapped is not None:
        pool.add(swapped)
    pool = sorted(v for v in pool if v != answer and v >= 0)
    return [str(v) for v in r.sample(pool, count - 1)] + [str(answer)]


def _arith_mc(r: random.Random) -> tuple[str, list[str], str]:
    kind = r.choice(["+", "-", "x", "%"])
    if kind == "+":
        a, b = r.randint(11, 99), r.randint(11, 99)
        question, answer = f"What is {a} + {b}?", a + b
    elif kind == "-":
        a = r.randint(40, 150)
        b = r.randint(11, a - 10)
        question, answer = f"What is {a} - {b}?", a - b
    elif kind == "x":
        a, b = r.randint(3, 15), r.randint(3, 12)
        question, answer = f"What is {a} times {b}?", a * b
    else:
        pct, base = r.choice([10, 20, 25, 50]), r.choice([20, 40, 60, 80, 100, 120, 200])
        question, answer = f"What is {pct}% of {base}?", pct * base // 100
    count = 10 if r.random() < 1 / 3 else 4  # MMLU-Pro has ten options; A-D is the classic case
    return question, _numeric_options(r, answer, count), str(answer)


def _ordering(r: random.Random) -> tuple[str, list[str], str]:
    a, b, c = r.sample(NAMES, 3)
    trait, most, least = r.choice([("taller", "tallest", "shortest"), ("older", "oldest", "youngest"), ("faster", "fastest", "slowest")])
    ask_most = r.random() < 0.5
    question = f"{a} is {trait} than {b}. {b} is {trait} than {c}. Who is the {most if ask_most else least}?"
    return question, [a, b, c, "It cannot be determined"], a if ask_most else c


def _syllogism(r: random.Random) -> tuple[str, list[str], str]:
    x, y, z = r.sample(CREATURES, 3)
    form = r.randrange(3)
    if form == 0:
        question, answer = f"All {x} are {y}. All {y} are {z}. Are all {x} {z}?", "Yes"
    elif form == 1:
        question, answer = f"All {x} are {y}. Some {y} are {z}. Are all {x} {z}?", "It cannot be determined"
    else:
        question, answer = f"No {x} are {y}. All {z} are {y}. Are any {z} {x}?", "No"
    return question, ["Yes", "No", "It cannot be determined", f"Only the {z}"], answer


def _conditional(r: random.Random) -> tuple[str, list[str], str]:
    cause, effect, not_effect = r.choice([
        ("it is raining", "the ground is wet", "the ground is not wet"),
        ("the lamp is on", "the room is bright", "the room is not bright"),
        ("the oven is hot", "the kitchen is warm", "the kitchen is not warm"),
        ("the bell rings", "the dog barks", "the dog does not bark"),
        ("the shop is open", "the door is unlocked", "the door is not unlocked"),
        ("the kettle boils", "it whistles", "it does not whistle"),
    ])
    form = r.randrange(3)
    if form == 0:  # modus ponens
        question, answer = f"If {cause}, then {effect}. We know that {cause}. Is it true that {effect}?", "Yes"
    elif form == 1:  # modus tollens
        question, answer = f"If {cause}, then {effect}. We know that {not_effect}. Is it true that {cause}?", "No"
    else:  # affirming the consequent: a classic trap
        question, answer = f"If {cause}, then {effect}. We know that {effect}. Is it true that {cause}?", "It cannot be determined"
    return question, ["Yes", "No", "It cannot be determined", "Both yes and no"], answer


def _sequence(r: random.Random) -> tuple[str, list[str], str]:
    if r.random() < 0.6:
        start, step = r.randint(1, 20), r.randint(2, 9)
        seq = [start + step * i for i in range(5)]
    else:
        start, ratio = r.randint(1, 5), r.choice([2, 3])
        seq = [start * ratio**i for i in range(5)]
    shown = ", ".join(map(str, seq[:4]))
    return f"What number comes next in the sequence {shown}, ...?", _numeric_options(r, seq[4], 4), str(seq[4])


def _days(r: random.Random) -> tuple[str, list[str], str]:
    today, ahead = r.randrange(7), r.randint(2, 12)
    question = f"If today is {DAYS[today]}, what day of the week will it be in {ahead} days?"
    return question, list(DAYS), DAYS[(today + ahead) % 7]  # seven options: A-G


def _largest(r: random.Random) -> tuple[str, list[str], str]:
    values = r.sample(range(10, 999), 4)
    ask_max = r.random() < 0.5
    question = f"Which of these numbers is the {'largest' if ask_max else 'smallest'}?"
    return question, [str(v) for v in values], str(max(values) if ask_max else min(values))


LOGIC: list[Callable[[random.Random], tuple[str, list[str], str]]] = [_ordering, _syllogism, _conditional, _sequence, _days, _largest]


def _choice_item(r: random.Random, question: str, options: list[str], answer: str, category: str) -> dict[str, Any]:
    options = list(options)
    if options != DAYS:  # weekdays stay in calendar order, as a real test would print them
        r.shuffle(options)
    index = options.index(answer)
    return {"question": question, "options": options, "answer": LETTERS[index], "answer_index": index, "category": category}


def generate(seed: int = 0, free: int = 80, arithmetic_mc: int = 60, logic_mc: int = 60) -> list[dict[str, Any]]:
    r = random.Random(seed)
    items: list[dict[str, Any]] = []
    seen: set[tuple] = set()

    def add(item: dict[str, Any]) -> bool:
        key = (item["question"], tuple(sorted(item["options"])))
        if key in seen:
            return False
        seen.add(key)
        items.append(item)
        return True

    made = 0
    while made < free:
        question, answer = FREE[made % len(FREE)](r)
        made += add({"question": question, "options": [], "answer": str(answer), "category": "arithmetic"})
    made = 0
    while made < arithmetic_mc:
        made += add(_choice_item(r, *_arith_mc(r), "arithmetic"))
    made = 0
    while made < logic_mc:
        made += add(_choice_item(r, *LOGIC[made % len(LOGIC)](r), "logic"))
    r.shuffle(items)
    return [
        {"question_id": i, **item, "cot_content": "", "src": SRC}
        for i, item in enumerate(items)
    ]


def render(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    items = generate(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(items), encoding="utf-8")
    print(f"wrote {len(items)} questions to {args.out}")


if __name__ == "__main__":
    main()
