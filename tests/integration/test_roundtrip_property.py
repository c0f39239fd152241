"""Property: any value a step returns (or a run is given) is refused with a coded error, or read back equal."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import plait

ANY_JSON: Any = Any  # a workflow input of no declared type

_VALUES: dict[int, Any] = {}
_keys = itertools.count()


@plait.step
def give_back(key: int) -> Any:
    return _VALUES.pop(key)


returns_it = plait.workflow("roundtrip_output", input=int).then(give_back).commit()
stores_it = plait.workflow("roundtrip_input", input=ANY_JSON).then(give_back).commit()


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# Characters of every category, lone surrogates included.
texts = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(["", "\x00", "a\x00b", "\ud800"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    # 4,300 digits read back, 4,301 do not (built lazily: Python cannot even repr such an int)
    | st.tuples(st.sampled_from([4299, 4300, 5000]), st.sampled_from([1, -1])).map(lambda d: d[1] * 10 ** d[0])
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=16,
)
values = json_values | st.integers(min_value=150, max_value=300).map(nested)


def same(read: Any, written: Any) -> bool:
    """Equal, and of the same JSON type all the way down (1 is not 1.0, True is not 1)."""
    if type(read) is not type(written):
        return False
    if isinstance(written, dict):
        return read.keys() == written.keys() and all(same(read[k], written[k]) for k in written)
    if isinstance(written, list):
        return len(read) == len(written) and all(same(r, w) for r, w in zip(read, written, strict=True))
    return bool(read == written)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_a_stored_value_is_refused_with_a_code_or_read_back_equal(engine: plait.Engine, value: Any) -> None:
    key = next(_keys)
    _VALUES[key] = value
    run = engine.start(returns_it, key)
    try:
        result = run.result(timeout=30)
    except plait.RunFailed as failed:
        assert failed.error["code"] == "step.output_invalid", failed.error
        event("refused")
        assert [step.status for step in run.steps()] == ["failed"]
    else:
        event("read back")
        assert same(result, value)
        assert same(run.info().output, value)
        assert same(run.steps()[-1].output, value)
        completed = [e for e in run.events(follow=False) if e.type == "run.completed"]
        assert same(completed[0].payload, {"output": value})

    try:
        parked = engine.start(stores_it, value, delay=timedelta(days=1))
    except plait.InputValidationError as refused:
        assert refused.code == "input.invalid"
    else:
        assert same(parked.info().input, value)
        parked.cancel()
