"""A document pipeline that accounts for its model calls: extract -> summarize -> analyze.

The model clients here are fakes that answer with the providers' own SDK
response objects (no network, no key): swap in ``openai.OpenAI()`` and
``anthropic.Anthropic()`` and nothing else changes. Needs ``pip install 'plait[ai]' openai anthropic``.
"""

from __future__ import annotations

from typing import Any

from anthropic.types import Message, TextBlock
from anthropic.types import Usage as AnthropicUsage
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.completion_usage import CompletionUsage
from pydantic import BaseModel

import plait

SUMMARY_MODEL = "gpt-4o-mini"
ANALYSIS_MODEL = "claude-3-5-haiku-20241022"


class FakeOpenAI:
    """Answers ``chat.completions.create`` like OpenAI: 1 prompt token per 4 characters, 120 completion tokens."""

    def __init__(self) -> None:
        self.chat = self
        self.completions = self

    def create(self, *, model: str, messages: list[dict[str, str]]) -> ChatCompletion:
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4
        return ChatCompletion(
            id="chatcmpl-fake",
            object="chat.completion",
            created=0,
            model=model,
            choices=[
                Choice(
                    index=0,
                    finish_reason="stop",
                    message=ChatCompletionMessage(role="assistant", content=f"summary of {prompt_tokens} tokens"),
                )
            ],
            usage=CompletionUsage(prompt_tokens=prompt_tokens, completion_tokens=120, total_tokens=prompt_tokens + 120),
        )


class FakeAnthropic:
    """Answers ``messages.create`` like Anthropic: 300 input tokens, 80 output tokens."""

    def __init__(self) -> None:
        self.messages = self

    def create(self, *, model: str, max_tokens: int, messages: list[dict[str, Any]]) -> Message:
        return Message(
            id="msg-fake",
            type="message",
            role="assistant",
            model=model,
            content=[TextBlock(type="text", text="sentiment: positive")],
            stop_reason="end_turn",
            usage=AnthropicUsage(input_tokens=300, output_tokens=80),
        )


openai_client = FakeOpenAI()
anthropic_client = FakeAnthropic()


class Document(BaseModel):
    title: str
    pages: list[str]


class Extracted(BaseModel):
    title: str
    sections: list[str]


class Summary(BaseModel):
    title: str
    summaries: list[str]


class Analysis(BaseModel):
    title: str
    summaries: list[str]
    verdict: str


@plait.step
def extract(document: Document) -> Extracted:
    return Extracted(title=document.title, sections=[page.strip() for page in document.pages if page.strip()])


@plait.step
def summarize(ctx: plait.Context, extracted: Extracted) -> Summary:
    summaries = []
    for section in extracted.sections:  # one model call per section
        messages = [{"role": "user", "content": f"Summarize: {section}"}]
        completion = openai_client.chat.completions.create(model=SUMMARY_MODEL, messages=messages)
        ctx.record_usage(completion, prompt=messages)
        summaries.append(completion.choices[0].message.content or "")
    return Summary(title=extracted.title, summaries=summaries)


@plait.step
def analyze(ctx: plait.Context, summary: Summary) -> Analysis:
    left = ctx.budget_left
    if left is not None and left.max_cost is not None and left.max_cost < 0.001:
        return Analysis(title=summary.title, summaries=summary.summaries, verdict="skipped: budget")
    message = anthropic_client.messages.create(
        model=ANALYSIS_MODEL, max_tokens=200, messages=[{"role": "user", "content": "\n".join(summary.summaries)}]
    )
    ctx.record_usage(message)
    verdict = "".join(block.text for block in message.content if isinstance(block, TextBlock))
    return Analysis(title=summary.title, summaries=summary.summaries, verdict=verdict)


pipeline = (
    plait.workflow("document-pipeline", input=Document, output=Analysis, budget=plait.Budget(max_cost=1.0))
    .then(extract)
    .then(summarize)
    .then(analyze)
    .commit()
)

if __name__ == "__main__":
    with plait.Engine("sqlite:///plait-documents.db") as engine:
        run = engine.start(pipeline, {"title": "Q3 report", "pages": ["Revenue grew. " * 40, "Costs fell. " * 20]})
        print(run.result(timeout=30).verdict)
        usage = run.info().usage
        print(f"run {run.id}: {usage.calls} calls, {usage.input_tokens}+{usage.output_tokens} tokens, ${usage.cost}")
        for row in engine.usage(group_by="model"):
            print(f"  {row.key:28} {row.calls} calls  ${row.cost}")
