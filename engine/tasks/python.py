"""Small Python functions checked by unit tests.

    prompt "Write a Python function `add_7(x)` that returns x plus 7."
    tests  "assert add_7(1) == 8\\nassert add_7(-7) == 0"

Grading runs the completion's last Python code block and then `example["tests"]` in the
sandbox, through the shared `code` reward (`engine.rewards.get("code")`: 0.0 no code,
0.1 not Python, 0.25 fails, 1.0 passes), imported lazily so this module loads anywhere.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from engine.tasks.base import Example, Task

# (name, signature, description, body, test cases as (call args, expected result))
Spec = tuple[str, str, str, str, list[tuple[str, str]]]

FIXED: list[Spec] = [
    ("multiply", "a, b", "returns the product of a and b", "return a * b", [("2, 3", "6"), ("-1, 5", "-5")]),
    ("is_even", "n", "returns True when n is even", "return n % 2 == 0", [("4", "True"), ("7", "False")]),
    ("max_of_list", "xs", "returns the largest number in the list xs", "return max(xs)",
     [("[1, 5, 3]", "5"), ("[-2, -1]", "-1")]),
    ("reverse_string", "s", "returns the string s reversed", "return s[::-1]", [("'abc'", "'cba'"), ("''", "''")]),
    ("count_vowels", "s", "returns how many vowels (aeiou) the string s has",
     "return sum(1 for c in s if c in 'aeiou')", [("'banana'", "3"), ("'xyz'", "0")]),
    ("sum_list", "xs", "returns the sum of the numbers in xs", "return sum(xs)", [("[1, 2, 3]", "6"), ("[]", "0")]),
    ("square", "x", "returns x squared", "return x * x", [("3", "9"), ("-4", "16")]),
    ("factorial", "n", "returns n factorial", "return 1 if n < 2 else n * factorial(n - 1)",
     [("0", "1"), ("5", "120")]),
    ("is_palindrome", "s", "returns True when s reads the same backwards", "return s == s[::-1]",
     [("'level'", "True"), ("'ab'", "False")]),
    ("min_of_two", "a, b", "returns the smaller of a and b", "return a if a < b else b", [("3, 9", "3"), ("5, -2", "-2")]),
    ("abs_diff", "a, b", "returns the absolute difference of a and b", "return abs(a - b)", [("3, 9", "6"), ("9, 3", "6")]),
    ("count_char", "s, c", "returns how many times the character c appears in s", "return s.count(c)",
     [("'hello', 'l'", "2"), ("'abc', 'z'", "0")]),
    ("first_element", "xs", "returns the first element of the list xs", "return xs[0]", [("[4, 5]", "4"), ("['a']", "'a'")]),
    ("last_element", "xs", "returns the last element of the list xs", "return xs[-1]", [("[4, 5]", "5"), ("['a']", "'a'")]),
    ("clamp", "x, lo, hi", "returns x limited to the range lo..hi", "return max(lo, min(x, hi))",
     [("5, 0, 3", "3"), ("-1, 0, 3", "0"), ("2, 0, 3", "2")]),
    ("sum_range", "n", "returns the sum of the integers from 1 to n", "return n * (n + 1) // 2",
     [("3", "6"), ("10", "55")]),
    ("count_positive", "xs", "returns how many numbers in xs are greater than zero",
     "return sum(1 for x in xs if x > 0)", [("[1, -2, 3]", "2"), ("[]", "0")]),
    ("join_words", "words", "returns the words joined with single spaces", "return ' '.join(words)",
     [("['a', 'b']", "'a b'"), ("[]", "''")]),
]


def _family(name: str, describe: str, body: str, cases: Callable[[int], list[tuple[str, str]]]) -> Callable[[int], Spec]:
    """A problem family with a constant k: `add_7`, `add_8`, ..."""
    return lambda k: (f"{name}_{k}", "x", describe.format(k=k), body.format(k=k), cases(k))


FAMILIES = [
    _family("add", "returns x plus {k}", "return x + {k}", lambda k: [("1", str(1 + k)), (str(-k), "0")]),
    _family("times", "returns x multiplied by {k}", "return x * {k}", lambda k: [("2", str(2 * k)), ("0", "0")]),
    _family("subtract", "returns x minus {k}", "return x - {k}", lambda k: [("10", str(10 - k)), (str(k), "0")]),
    _family("power", "returns x to the power {k}", "return x ** {k}", lambda k: [("2", str(2**k)), ("1", "1")]),
    _family("is_multiple_of", "returns True when x is divisible by {k}", "return x % {k} == 0",
            lambda k: [(str(3 * k), "True"), (str(k + 1), "False")]),
    _family("remainder", "returns the remainder of x divided by {k}", "return x % {k}",
            lambda k: [(str(k + 1), "1"), (str(2 * k), "0")]),
]
CONSTANTS = range(2, 21)


class PythonTask(Task):
    """Write one small function; its unit tests decide."""

    name = "python"
    default_sizes = {"train": 120, "test": 20}  # the problem space is small (~130 problems)

    def _draw(self, rng: random.Random) -> tuple[str, Example]:
        pick = rng.randrange(len(FIXED) + len(FAMILIES) * len(CONSTANTS))
        if pick < len(FIXED):
            spec = FIXED[pick]
        else:
            family, k = divmod(pick - len(FIXED), len(CONSTANTS))
            spec = FAMILIES[family](CONSTANTS[k])
        name, args, describe, body, cases = spec
        code = f"def {name}({args}):\n    {body}\n"
        tests = "\n".join(f"assert {name}({call}) == {want}" for call, want in cases) + "\n"
        prompt = f"Write a Python function `{name}({args})` that {describe}."
        return name, {"prompt": prompt, "answer": code, "tests": tests, "entry_point": name}

    def reward(self, completion: str, example: Example) -> float:
        from engine import rewards  # lazy: the sandbox is only needed when grading code

        return float(rewards.get("code")(completion, example))

    def evaluate(self, completion: str, example: Example) -> bool:
        return self.reward(completion, example) >= 1.0

    def solution(self, example: Example, rng: random.Random | None = None) -> str:
        name = example["entry_point"]
        return f"<think> Define {name}. </think> <answer>\n```python\n{example['answer']}```\n</answer>"
