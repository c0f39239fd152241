"""The cost of a model call from the ``genai-prices`` table (``pip install 'plait[ai]'``).

Imported on first use: without the extra, or for a model the table does not
know, the cost is None and its source "unknown"; nothing fails.

A full price calculation takes about 0.3 ms, as long as a step's commit, so
the per-token rates of a model with plain (untiered) token prices are looked
up once per model and hour and applied directly; anything else (tiered
prices, per-request fees) goes through the library's calculation.
"""

from __future__ import annotations

import importlib
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from plait.usage.extract import Call
from plait.usage.models import CostSource

# The token prices the direct path applies, per million tokens.
_RATE_KEYS = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")
_MILLION = Decimal(1_000_000)
Rates = tuple[Decimal | None, ...]


@cache
def _prices() -> Any:
    try:
        return importlib.import_module("genai_prices")
    except ImportError:
        return None


def price_version() -> str | None:
    """Which price data costs are computed from (None without the extra)."""
    prices = _prices()
    if prices is None:
        return None
    snapshot = prices.data_snapshot.get_snapshot()
    return _version_of(prices.__version__, snapshot.timestamp if snapshot.from_auto_update else None)


@lru_cache(maxsize=8)
def _version_of(library: str, updated: datetime | None) -> str:
    if updated is not None:
        return f"genai-prices {library} updated {updated.isoformat(timespec='seconds')}"
    return f"genai-prices {library}"


@lru_cache(maxsize=1024)
def _rates(model: str, provider: str | None, hour: int) -> Rates | str | None:
    """The model's plain token rates; "unknown" when the table lacks it; None when only a full calculation will do."""
    snapshot = _prices().data_snapshot.get_snapshot()
    try:
        _, info = snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        return "unknown"
    price = info.get_prices(datetime.fromtimestamp(hour * 3600, UTC))
    # Prices of units plait never reports (searches, audio, images) do not apply; a per-request fee would.
    rates = tuple(getattr(price, key, None) for key in _RATE_KEYS)
    if getattr(price, "requests_kusd", None) is not None or not all(r is None or type(r) is Decimal for r in rates):
        return None
    return rates


def _direct(call: Call, rates: Rates) -> Decimal | None:
    """The cost from plain rates, or None when a count has no rate of its own (the library decides then)."""
    fresh = call.input_tokens - call.cache_read_tokens - call.cache_write_tokens
    counts = (fresh, call.cache_read_tokens, call.cache_write_tokens, call.output_tokens)
    if fresh < 0 or any(count and rate is None for count, rate in zip(counts, rates, strict=True)):
        return None
    return sum((count * rate / _MILLION for count, rate in zip(counts, rates, strict=True) if rate), Decimal(0))


def cost_of(call: Call, at: float) -> tuple[float | None, CostSource, str | None]:
    """(cost in USD, "computed" or "unknown", price data version) of one call made at ``at`` (epoch seconds)."""
    prices = _prices()
    if prices is None or not call.model:
        return None, "unknown", None
    version = price_version()
    providers = list(dict.fromkeys([call.provider, None]))
    for provider in providers:
        rates = _rates(call.model, provider, int(at // 3600))
        if rates == "unknown":
            continue
        if isinstance(rates, tuple) and (direct := _direct(call, rates)) is not None:
            return float(direct), "computed", version
        return _calculated(prices, call, provider, at, version)
    return None, "unknown", version


def _calculated(
    prices: Any, call: Call, provider: str | None, at: float, version: str | None
) -> tuple[float | None, CostSource, str | None]:
    tokens = {
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "cache_read_tokens": call.cache_read_tokens,
        "cache_write_tokens": call.cache_write_tokens,
    }
    usage = prices.Usage(**{k: v for k, v in tokens.items() if v})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a price table nearing its expiry date must not fail a step
        try:
            result = prices.calc_price(
                usage, call.model, provider_id=provider, genai_request_timestamp=datetime.fromtimestamp(at, UTC)
            )
        except (LookupError, ValueError):
            return None, "unknown", version
    return float(result.total_price), "computed", version
