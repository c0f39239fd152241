"""Must pass mypy --strict: the typed chain as users write it."""

from __future__ import annotations

from pydantic import BaseModel

import plait


class UserId(BaseModel):
    id: int


class User(BaseModel):
    id: int
    email: str


class Receipt(BaseModel):
    sent_to: str


class Admin(User):
    pass


@plait.step
def fetch_user(user_id: UserId) -> Admin:
    return Admin(id=user_id.id, email="a@x")


@plait.step
async def send_welcome(ctx: plait.Context, user: User) -> Receipt:  # accepts a supertype of Admin
    return Receipt(sent_to=user.email)


@plait.step
def words(text: str) -> list[str]:
    return text.split()


@plait.step
def length(word: str) -> int:
    return len(word)


@plait.step
def total(lengths: list[int]) -> int:
    return sum(lengths)


@plait.step
def biggest(lengths: list[int]) -> int:
    return max(lengths)


@plait.step
def halve(x: int) -> int:
    return x // 2


onboard: plait.Workflow[UserId, Receipt] = (
    plait.workflow("onboard", input=UserId).then(fetch_user).then(send_welcome).commit()
)

measured: plait.Builder[str, tuple[int, int]] = (
    plait.workflow("measure", input=str).then(words).foreach(length, concurrency=4).parallel(total, biggest)
)
summed: plait.Workflow[str, int] = (
    measured.map(lambda pair: pair[0] + pair[1])
    .dowhile(halve, lambda x: x > 10)
    .branch((lambda x: x > 3, halve.with_options(id="h2")), default=halve.with_options(id="h3"))
    .commit()
)

parent: plait.Workflow[UserId, Receipt] = plait.workflow("parent", input=UserId).then(onboard).commit()


def use(engine: plait.Engine) -> str:
    receipt: Receipt = engine.start(onboard, UserId(id=1)).result()
    count: int = engine.start(summed, "a b c").result(timeout=5)
    return f"{receipt.sent_to}{count}"


class Summarize(plait.AIConfig):
    max_length: int = 100


@plait.step(config=Summarize)
def summarize(ctx: plait.Context, text: str) -> str:
    return text


send_receipt = plait.spec("send-receipt", input=UserId, output=Receipt, version="1")
receipt_impl: plait.Builder[UserId, UserId] = plait.workflow(send_receipt)


def use_spec(client: plait.Engine) -> str:
    handle: plait.RunHandle[Receipt] = client.start(send_receipt, UserId(id=2))
    named: plait.RunHandle[object] = client.start("send-receipt@1", {"id": 3})
    client.start(plait.workflow("s", input=str).then(summarize).commit(), "x", config={"summarize": {"max_length": 5}})
    kept: list[plait.Artifact] = handle.artifacts()
    return handle.result().sent_to + str(len(kept)) + str(named.id)
