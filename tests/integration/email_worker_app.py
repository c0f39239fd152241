"""A worker process that implements the ``send-email`` spec.

    python email_worker_app.py URL

Runs ``engine.work()`` until SIGTERM; the client in the test never imports this file.
"""

from __future__ import annotations

import os
import sys

import plait
from tests.integration.email_spec import Delivered, SendEmail, send_email


@plait.step
def deliver(email: SendEmail) -> Delivered:
    return Delivered(message_id=f"<{email.to}:{email.subject}>", worker_pid=os.getpid())


implementation = plait.workflow(send_email).then(deliver).commit()

if __name__ == "__main__":
    engine = plait.Engine(sys.argv[1], poll_interval=0.02)
    engine.register(implementation)
    print("ready", flush=True)
    engine.work(grace=5)
