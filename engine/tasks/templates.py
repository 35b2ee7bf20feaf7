"""Prompt templates: R1-Zero's plain-text template for base models, chat templates for
instruct models.

Decision for the R1-Zero template: a shortened variant of the paper's (the tiny starter
model pays for every prompt token in pretraining and sampling), and `<think>` is NOT
prefilled by default. A base model then chooses between starting with `<think>` and
answering at once, and RL with the format and accuracy rewards learns that choice, as
R1-Zero did; `prefill_think=True` starts the assistant turn with "<think>" for models
that never pick it up by themselves.
"""

from __future__ import annotations

from typing import Any

from engine.text import user_text

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The Assistant first thinks in <think> </think> "
    "tags, then answers in <answer> </answer> tags.\n"
    "User: {prompt}\n"
    "Assistant:"
)

R1_SYSTEM_PROMPT = (
    "You are a helpful assistant. You first think about the reasoning process and then give "
    "the answer. Enclose the reasoning in <think> </think> tags and the final answer in "
    "<answer> </answer> tags, i.e. <think> reasoning here </think> <answer> answer here </answer>."
)

STYLES = ("auto", "r1_zero", "chat")
Messages = list[dict[str, str]]


def r1_zero_prompt(prompt: str, *, prefill_think: bool = False) -> str:
    """The R1-Zero template around one question; the completion follows "Assistant:"."""
    text = R1_ZERO_TEMPLATE.format(prompt=prompt.strip())
    return text + " <think>" if prefill_think else text


def has_chat_template(tokenizer: Any) -> bool:
    """Whether `tokenizer` carries a chat template (instruct models do, base models not)."""
    return bool(getattr(tokenizer, "chat_template", None))


def as_messages(prompt: str | Messages, system: str | None = None) -> Messages:
    """A question as chat messages, with `system` first unless the messages bring one."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def format_prompt(
    prompt: str | Messages,
    tokenizer: Any = None,
    *,
    style: str = "auto",
    system: str | None = R1_SYSTEM_PROMPT,
    prefill_think: bool = False,
) -> str:
    """The text a model continues for `prompt`.

    `style="auto"` uses the tokenizer's chat template when it has one, else R1-Zero's
    template; a messages list without a chat template keeps only the user turns.
    """
    if style not in STYLES:
        raise ValueError(f"Prompt style must be one of {', '.join(STYLES)}, not {style!r}.")
    use_chat = style == "chat" or (style == "auto" and has_chat_template(tokenizer))
    if use_chat:
        if not has_chat_template(tokenizer):
            raise ValueError("The chat prompt style needs a tokenizer with a chat template.")
        text = tokenizer.apply_chat_template(as_messages(prompt, system), tokenize=False, add_generation_prompt=True)
        return text + "<think>" if prefill_think else text
    return r1_zero_prompt(user_text(prompt), prefill_think=prefill_think)
