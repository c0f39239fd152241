"""Reading usage from the providers' own SDK response types, and pricing it (no network)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from anthropic.types import Message, TextBlock
from anthropic.types import Usage as AnthropicUsage
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.completion_usage import CompletionTokensDetails, CompletionUsage, PromptTokensDetails
from openai.types.responses import Response
from pydantic import BaseModel, SecretStr
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

import plait
from plait.errors import InputValidationError
from plait.usage.extract import Call, calls_from
from plait.usage.prices import cost_of
from plait.usage.prompts import REDACTED, stored_text

NOW = 1_768_435_200.0  # 2026-01-15 UTC


def chat_completion(model: str = "gpt-4o", prompt: int = 1200, completion: int = 300) -> ChatCompletion:
    return ChatCompletion(
        id="chatcmpl-1",
        object="chat.completion",
        created=0,
        model=model,
        choices=[
            Choice(
                index=0,
                finish_reason="stop",
                message=ChatCompletionMessage(role="assistant", content="a summary"),
            )
        ],
        usage=CompletionUsage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=200),
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=50),
        ),
    )


def responses_result() -> Response:
    return Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": "gpt-4o-mini",
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "hello", "annotations": []}],
                }
            ],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 1000,
                "output_tokens": 200,
                "total_tokens": 1200,
                "input_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 30},
            },
        }
    )


def anthropic_message() -> Message:
    return Message(
        id="msg_1",
        type="message",
        role="assistant",
        model="claude-3-5-haiku-20241022",
        content=[TextBlock(type="text", text="an analysis")],
        stop_reason="end_turn",
        usage=AnthropicUsage(
            input_tokens=100, output_tokens=50, cache_read_input_tokens=1000, cache_creation_input_tokens=200
        ),
    )


def agent_result() -> Any:
    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        usage = RequestUsage(input_tokens=500, output_tokens=60, cache_read_tokens=100)
        return ModelResponse(parts=[TextPart("the agent's answer")], usage=usage)

    return Agent(FunctionModel(reply, model_name="gpt-4o")).run_sync("hello")


def test_openai_chat_completion() -> None:
    [call] = calls_from(chat_completion())
    assert call == Call("gpt-4o", "openai", 1200, 300, 200, 0, 50, "a summary")
    [bare] = calls_from(chat_completion().usage)
    assert (bare.model, bare.input_tokens, bare.output_tokens) == (None, 1200, 300)


def test_openai_responses() -> None:
    [call] = calls_from(responses_result())
    assert call == Call("gpt-4o-mini", "openai", 1000, 200, 400, 0, 30, "hello")


def test_anthropic_message_counts_cached_input_as_input() -> None:
    [call] = calls_from(anthropic_message())
    assert call == Call("claude-3-5-haiku-20241022", "anthropic", 1300, 50, 1000, 200, 0, "an analysis")


def test_pydantic_ai_run_gives_one_call_per_model_response() -> None:
    [call] = calls_from(agent_result())
    assert (call.model, call.input_tokens, call.output_tokens, call.cache_read_tokens) == ("gpt-4o", 500, 60, 100)
    assert call.response_text == "the agent's answer"


def test_unknown_objects_are_refused_with_the_keyword_form_named() -> None:
    with pytest.raises(InputValidationError, match="keyword form"):
        calls_from({"usage": 1})


def test_cost_is_computed_from_the_price_table() -> None:
    call = calls_from(anthropic_message())[0]
    cost, source, version = cost_of(call, NOW)
    expected = calc_price(
        PriceUsage(input_tokens=1300, output_tokens=50, cache_read_tokens=1000, cache_write_tokens=200),
        "claude-3-5-haiku-20241022",
        provider_id="anthropic",
    ).total_price
    assert source == "computed" and version is not None and version.startswith("genai-prices ")
    assert Decimal(str(cost)) == expected
    # By hand, from the table's per-million prices: 100 fresh input, 1000 cache reads, 200 cache writes, 50 output.
    assert cost == pytest.approx((100 * 0.8 + 1000 * 0.08 + 200 * 1.0 + 50 * 4.0) / 1e6)


def test_an_unknown_model_has_no_cost() -> None:
    assert cost_of(Call("no-such-model-anywhere", "nobody", 10, 10), NOW)[:2] == (None, "unknown")
    assert cost_of(Call(None, None, 10, 10), NOW)[:2] == (None, "unknown")


def test_stored_prompts_never_hold_secrets() -> None:
    class Hidden:  # what plait.Hidden marks a secret parameter with
        pass

    class Params(BaseModel):
        model_config = {"arbitrary_types_allowed": True}
        token: SecretStr
        text: str

    from typing import Annotated

    class WithHidden(BaseModel):
        key: Annotated[str, Hidden()]
        text: str

    stored = stored_text([{"role": "user", "content": Params(token=SecretStr("s3cret"), text="hi")}])
    assert stored is not None and "s3cret" not in stored and REDACTED in stored and "hi" in stored
    hidden = stored_text(WithHidden(key="api-key-value", text="ok"))
    assert hidden is not None and "api-key-value" not in hidden and "ok" in hidden


def test_budget_reports_the_limit_reached() -> None:
    budget = plait.Budget(max_cost=1.0, max_tokens=1000)
    assert budget.exceeded_by(999, 0.5) is None
    assert "max_tokens" in (budget.exceeded_by(1000, 0.5) or "")
    assert "max_cost" in (budget.exceeded_by(10, 1.0) or "")


def test_direct_rates_agree_with_the_full_calculation_for_every_model_in_the_table() -> None:
    from genai_prices import data_snapshot

    from plait.usage.prices import _calculated, _prices, _rates, price_version

    now = NOW
    direct = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            call = Call(model.id, provider.id, 150_000, 3_000, 20_000, 1_000)
            expected = _calculated(_prices(), call, provider.id, now, price_version())
            if expected[0] is None:  # the table cannot price it under this provider's name
                continue
            direct += isinstance(_rates(model.id, provider.id, int(now // 3600)), tuple)
            assert cost_of(call, now) == expected, (provider.id, model.id)
    assert direct > 1000  # most models take the fast path
