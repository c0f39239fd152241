"""plait's HTTP API (needs ``pip install 'plait[server]'``): ``create_app(engine)``."""

from plait.http.api import create_app
from plait.http_triggers import HttpTrigger, TriggerRequest

__all__ = ["HttpTrigger", "TriggerRequest", "create_app"]
