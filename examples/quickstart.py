"""The README example: two typed steps, run durably on SQLite."""

from pydantic import BaseModel

import plait


class Signup(BaseModel):
    email: str


class Welcome(BaseModel):
    to: str
    body: str


@plait.step
def normalize(signup: Signup) -> Signup:
    return Signup(email=signup.email.strip().lower())


@plait.step(retry=plait.Retry(max_attempts=3))
def write_welcome(ctx: plait.Context, signup: Signup) -> Welcome:
    return Welcome(to=signup.email, body=f"Welcome aboard! (ref {ctx.idempotency_key})")


onboard = plait.workflow("onboard", input=Signup, output=Welcome).then(normalize).then(write_welcome).commit()

if __name__ == "__main__":
    with plait.Engine("sqlite:///plait-quickstart.db") as engine:
        run = engine.start(onboard, {"email": "  Ada@Example.com "})
        welcome = run.result(timeout=30)
        print(f"run {run.id} {run.status}: {welcome.to} <- {welcome.body!r}")
        for record in run.steps():
            print(f"  {record.step_id:14} {record.status:10} attempt {record.attempt}")
