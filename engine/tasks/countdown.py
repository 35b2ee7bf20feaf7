"""Countdown: combine the given numbers with + - * / to reach a target (TinyZero's task).

    "Using the numbers 3, 5, 7, each exactly once, and + - * /, make 22."
    answer "3 * 5 + 7"

Any expression that uses each given number exactly once and equals the target is right;
the stored answer is one reference solution.
"""

from __future__ import annotations

import ast
import random
import re
from fractions import Fraction

from engine.tasks.base import Example, Task, extract_answer

_ALLOWED = re.compile(r"^[\d\s+\-*/().]+$")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def apply(op: str, left: Fraction, right: Fraction) -> Fraction:
    """`left op right` exactly; ZeroDivisionError on a division by zero."""
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    return left / right


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]] | None:
    """Exact value of an arithmetic expression and the numbers it uses, or None when it
    is not a plain + - * / expression over integers (or divides by zero)."""
    expression = expression.split("=")[0].strip()  # "3 * 5 + 7 = 22" is fine too
    if not expression or not _ALLOWED.match(expression):
        return None
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return None
    numbers: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            numbers.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return apply(_OPS[type(node.op)], walk(node.left), walk(node.right))
        raise ValueError("not a plain arithmetic expression")

    try:
        value = walk(tree)
    except (ValueError, ZeroDivisionError, RecursionError):
        return None
    return value, numbers


class CountdownTask(Task):
    """Reach `target` using each of `numbers` exactly once."""

    name = "countdown"

    def __init__(self, count: int = 3, max_value: int = 12) -> None:
        if not 2 <= count <= 6:
            raise ValueError("Countdown needs between 2 and 6 numbers per problem.")
        if not 2 <= max_value <= 100:
            raise ValueError("Countdown max_value must be between 2 and 100.")
        self.count, self.max_value = count, max_value

    def seed_key(self) -> str:
        return f"{self.count}-{self.max_value}"

    def _draw(self, rng: random.Random) -> tuple[str, Example]:
        while True:
            numbers = [rng.randint(1, self.max_value) for _ in range(self.count)]
            built = self._build(numbers, rng)
            if built is not None:
                break
        expression, target, steps = built
        shown = sorted(numbers)
        listed = ", ".join(map(str, shown))
        prompt = f"Using the numbers {listed}, each exactly once, and + - * /, make {target}."
        key = f"{listed}->{target}"
        return key, {"prompt": prompt, "answer": expression, "numbers": shown, "target": target, "steps": steps}

    @staticmethod
    def _build(numbers: list[int], rng: random.Random) -> tuple[str, int, list[str]] | None:
        """A left-to-right expression over `numbers` with a positive integer value,
        its value and the worked steps ("3 * 5 = 15."), or None if this draw failed."""
        expression, value, loose = str(numbers[0]), Fraction(numbers[0]), False
        steps: list[str] = []
        for n in numbers[1:]:
            op = rng.choice("+-*/")
            new = apply(op, value, Fraction(n))
            if new <= 0 or new.denominator != 1:
                op, new = "+", value + n  # keep values positive integers
            if op in "*/" and loose:
                expression = f"({expression})"
            steps.append(f"{value} {op} {n} = {new}.")
            expression, value, loose = f"{expression} {op} {n}", new, op in "+-"
        if value > 500:
            return None
        return expression, int(value), steps

    def evaluate(self, completion: str, example: Example) -> bool:
        answer = extract_answer(completion)
        if answer is None:
            return False
        result = evaluate_expression(answer)
        if result is None:
            return False
        value, used = result
        return sorted(used) == sorted(example["numbers"]) and value == int(example["target"])

    def solution(self, example: Example, rng: random.Random | None = None) -> str:
        work = " ".join(example["steps"])
        return f"<think> {work} </think> <answer> {example['answer']} </answer>"
