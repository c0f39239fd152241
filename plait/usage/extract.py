"""Reads model, provider and token counts from the response objects of LLM client libraries.

No SDK is imported: objects are recognised by their module and shape, so
plait works with whichever clients are installed. Token counts follow one
convention whatever the provider: ``input_tokens`` include cached input
(read and written), and ``reasoning_tokens`` are part of ``output_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plait.errors import InputValidationError


@dataclass(frozen=True)
class Call:
    """One model call's usage, as read from a response (``model`` may be unknown for a bare usage object)."""

    model: str | None
    provider: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    response_text: str | None = None


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _nested(obj: Any, *path: str) -> Any:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _family(obj: Any) -> str:
    return type(obj).__module__.split(".", 1)[0]


def calls_from(result: Any) -> list[Call]:
    """The calls a response (or its ``usage`` object) stands for; a pydantic-ai run gives one per model request.

    Raises InputValidationError for an object it cannot read.
    """
    family = _family(result)
    if family == "pydantic_ai":
        return _pydantic_ai(result)
    if family == "openai":
        return [_openai(result)]
    if family == "anthropic":
        return [_anthropic(result)]
    raise InputValidationError(
        f"record_usage cannot read a {type(result).__name__} ({type(result).__module__}): pass an OpenAI, "
        "Anthropic or pydantic-ai response or its usage, or use the keyword form "
        "record_usage(model=..., input_tokens=..., output_tokens=...)"
    )


def _openai(result: Any) -> Call:
    usage = getattr(result, "usage", result)
    model = getattr(result, "model", None) if usage is not result else None
    if usage is None:
        return Call(model, "openai")
    if hasattr(usage, "prompt_tokens"):  # Chat Completions
        return Call(
            model,
            "openai",
            input_tokens=_int(usage.prompt_tokens),
            output_tokens=_int(usage.completion_tokens),
            cache_read_tokens=_int(_nested(usage, "prompt_tokens_details", "cached_tokens")),
            cache_write_tokens=_int(_nested(usage, "prompt_tokens_details", "cache_write_tokens")),
            reasoning_tokens=_int(_nested(usage, "completion_tokens_details", "reasoning_tokens")),
            response_text=_openai_chat_text(result) if usage is not result else None,
        )
    return Call(  # Responses API
        model,
        "openai",
        input_tokens=_int(getattr(usage, "input_tokens", 0)),
        output_tokens=_int(getattr(usage, "output_tokens", 0)),
        cache_read_tokens=_int(_nested(usage, "input_tokens_details", "cached_tokens")),
        cache_write_tokens=_int(_nested(usage, "input_tokens_details", "cache_write_tokens")),
        reasoning_tokens=_int(_nested(usage, "output_tokens_details", "reasoning_tokens")),
        response_text=_text(getattr(result, "output_text", None)) if usage is not result else None,
    )


def _openai_chat_text(result: Any) -> str | None:
    choices = getattr(result, "choices", None) or []
    return _text(_nested(choices[0], "message", "content")) if choices else None


def _anthropic(result: Any) -> Call:
    usage = getattr(result, "usage", result)
    model = getattr(result, "model", None) if usage is not result else None
    cache_read = _int(getattr(usage, "cache_read_input_tokens", 0))
    cache_write = _int(getattr(usage, "cache_creation_input_tokens", 0))
    text = None
    if usage is not result:
        parts = [getattr(block, "text", None) for block in getattr(result, "content", None) or []]
        text = "".join(p for p in parts if isinstance(p, str)) or None
    return Call(
        model,
        "anthropic",
        # Anthropic counts cached input apart from input_tokens; plait's input_tokens include it.
        input_tokens=_int(getattr(usage, "input_tokens", 0)) + cache_read + cache_write,
        output_tokens=_int(getattr(usage, "output_tokens", 0)),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        response_text=text,
    )


def _pydantic_ai(result: Any) -> list[Call]:
    messages = getattr(result, "new_messages", None)
    if callable(messages):  # an agent run: one call per model response it holds
        responses = [m for m in messages() if getattr(m, "kind", None) == "response"]
        calls = [_pydantic_ai_response(r) for r in responses]
        if calls:
            last = calls[-1]
            output = getattr(result, "output", None)
            text = output if isinstance(output, str) else None
            calls[-1] = Call(**{**last.__dict__, "response_text": text or last.response_text})
        return calls
    if getattr(result, "kind", None) == "response":
        return [_pydantic_ai_response(result)]
    return [_pydantic_ai_usage(result, None, None)]


def _pydantic_ai_response(response: Any) -> Call:
    call = _pydantic_ai_usage(response.usage, response.model_name, getattr(response, "provider_name", None))
    text = getattr(response, "text", None)
    return Call(**{**call.__dict__, "response_text": text if isinstance(text, str) else None})


def _pydantic_ai_usage(usage: Any, model: str | None, provider: str | None) -> Call:
    if callable(usage):
        usage = usage()
    details = getattr(usage, "details", None) or {}
    reasoning = _int(getattr(usage, "output_reasoning_tokens", 0)) or _int(details.get("reasoning_tokens", 0))
    return Call(
        model,
        provider,
        input_tokens=_int(getattr(usage, "input_tokens", 0)),
        output_tokens=_int(getattr(usage, "output_tokens", 0)),
        cache_read_tokens=_int(getattr(usage, "cache_read_tokens", 0)),
        cache_write_tokens=_int(getattr(usage, "cache_write_tokens", 0)),
        reasoning_tokens=reasoning,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
