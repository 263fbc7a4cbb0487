"""Generates the shipped problem set: small function-writing tasks with known tests.

Each problem is built from a template and parameters, and its expected outputs are
computed here by a reference implementation, so every test case is right by construction.
Run from the plugin folder: ``python scripts/make_problems.py > matrix_plugin_codegen/data/problems.jsonl``.
"""
from __future__ import annotations

import json
import math
import random

rng = random.Random(20261201)


def ints(n, lo=-20, hi=20):
    return [rng.randint(lo, hi) for _ in range(n)]


def words(n):
    pool = ["apple", "kiwi", "banana", "fig", "cherry", "date", "plum", "grape", "lemon", "mango", "pear", "lime"]
    return [rng.choice(pool) for _ in range(n)]


TEMPLATES = []


def template(fn):
    TEMPLATES.append(fn)
    return fn


@template
def scale(k):
    return (f"scale_by_{k}".replace("-", "minus_"), "xs", f"Return a new list with every integer of `xs` multiplied by {k}.",
            lambda xs: [x * k for x in xs], [[ints(rng.randint(0, 6))] for _ in range(5)])


@template
def count_above(k):
    return (f"count_above_{abs(k)}" if k >= 0 else f"count_above_minus_{-k}", "xs",
            f"Return how many integers in the list `xs` are strictly greater than {k}.",
            lambda xs: sum(x > k for x in xs), [[ints(rng.randint(0, 8))] for _ in range(5)])


@template
def nth_fib(offset):
    def f(n):
        a, b = offset, offset + 1
        for _ in range(n):
            a, b = b, a + b
        return a
    return (f"fib_from_{offset}", "n",
            f"A sequence starts {offset}, {offset + 1}, and each later term is the sum of the two before it. "
            f"Return the term at index `n` (index 0 is {offset}).", f, [[rng.randint(0, 15)] for _ in range(5)])


@template
def every_kth_char(k):
    return (f"every_{k}th_char", "s", f"Return the string made of the characters of `s` at indices 0, {k}, {2 * k}, ...",
            lambda s: s[::k], [["".join(words(rng.randint(1, 3)))] for _ in range(5)])


@template
def count_char(c):
    return (f"count_{c}", "s", f"Return how many times the letter '{c}' occurs in the string `s` (lower case only).",
            lambda s: s.count(c), [[" ".join(words(rng.randint(0, 4)))] for _ in range(5)])


@template
def digit_sum_mod(m):
    return (f"digit_sum_mod_{m}", "n", f"Return the sum of the decimal digits of the non-negative integer `n`, modulo {m}.",
            lambda n: sum(map(int, str(n))) % m, [[rng.randint(0, 10 ** rng.randint(1, 7))] for _ in range(5)])


@template
def clamp(lo):
    hi = lo + rng.randint(3, 10)
    return (f"clamp_{lo}_{hi}".replace("-", "minus_"), "xs",
            f"Return a new list where each integer of `xs` below {lo} becomes {lo} and each above {hi} becomes {hi}.",
            lambda xs: [min(max(x, lo), hi) for x in xs], [[ints(rng.randint(0, 7))] for _ in range(5)])


@template
def longest_word(_):
    return ("longest_word", "words", "Return the longest string in the non-empty list `words`; on a tie, the first one.",
            lambda ws: max(ws, key=len), [[words(rng.randint(1, 5))] for _ in range(5)])


@template
def gcd_of_list(_):
    return ("gcd_of_list", "xs", "Return the greatest common divisor of the positive integers in the non-empty list `xs`.",
            lambda xs: math.gcd(*xs), [[[rng.choice([2, 3, 4, 6]) * rng.randint(1, 12) for _ in range(rng.randint(1, 4))]] for _ in range(5)])


@template
def is_palindrome(_):
    samples = ["level", "kayak", "matrix", "abba", "abc", "", "a", "noon", "moon"]
    return ("is_palindrome", "s", "Return True if the string `s` reads the same forwards and backwards, else False.",
            lambda s: s == s[::-1], [[rng.choice(samples)] for _ in range(5)])


@template
def running_max(_):
    def f(xs):
        out, best = [], None
        for x in xs:
            best = x if best is None else max(best, x)
            out.append(best)
        return out
    return ("running_max", "xs", "Return a list whose i-th item is the largest of `xs[0]` .. `xs[i]`.",
            f, [[ints(rng.randint(0, 7))] for _ in range(5)])


@template
def sum_of_multiples(k):
    return (f"sum_of_multiples_of_{k}", "n", f"Return the sum of all positive multiples of {k} that are smaller than `n`.",
            lambda n: sum(range(k, n, k)), [[rng.randint(0, 60)] for _ in range(5)])


PARAMS = {
    "scale": [2, 3, -1, 10], "count_above": [0, 5, -3, 10], "nth_fib": [0, 1, 2, 5], "every_kth_char": [2, 3, 4],
    "count_char": ["a", "e", "n", "r"], "digit_sum_mod": [3, 7, 10], "clamp": [0, -5, 10], "longest_word": [None], "gcd_of_list": [None], "is_palindrome": [None],
    "running_max": [None], "sum_of_multiples": [3, 4, 5, 7, 11],
}


def main() -> None:
    problem_id = 0
    for make in TEMPLATES:
        for param in PARAMS[make.__name__]:
            name, arg, text, ref, inputs = make(param)
            assert name.isidentifier(), name
            tests = [{"args": args, "expected": ref(*args)} for args in inputs]
            print(json.dumps({
                "problem_id": f"p{problem_id:03d}", "function": name, "signature": f"def {name}({arg}):",
                "description": text, "tests": tests, "visible_tests": 2,
            }))
            problem_id += 1


if __name__ == "__main__":
    main()
