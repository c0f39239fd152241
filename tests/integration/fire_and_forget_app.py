"""An app whose engine (a default one, worker=True) starts a run and leaves: ``plait run --app``, or a script.

    python fire_and_forget_app.py URL    # start a run, wait for its first step to begin, leave ``with``

The script prints the run id. The database URL comes from ``PLAIT_DATABASE_URL`` for ``--app`` use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import plait
from tests.integration.ledger_flows import first_step_started, ledgered


def main(url: str) -> None:
    with plait.Engine(url) as script_engine:
        run = script_engine.start(ledgered, 1)
        assert first_step_started.wait(30), "the first step never started"
        print(run.id, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
else:
    engine = plait.Engine(os.environ.get("PLAIT_DATABASE_URL"))
    engine.register(ledgered)
