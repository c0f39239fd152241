"""plait's web dashboard, served by ``plait.http.create_app`` at ``/`` (needs ``pip install 'plait[server]'``)."""

from plait.dashboard.app import mount_dashboard

__all__ = ["mount_dashboard"]
