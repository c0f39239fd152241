"""plait's HTTP API (needs ``pip install 'plait[server]'``): ``create_app(engine)``."""

from plait.http.api import HttpTrigger, TriggerRequest, create_app

__all__ = ["HttpTrigger", "TriggerRequest", "create_app"]
