"""AI usage: reading model calls from client responses, pricing them, budgets and reports."""

from plait.usage.models import Budget, Usage, UsageRow

__all__ = ["Budget", "Usage", "UsageRow"]
