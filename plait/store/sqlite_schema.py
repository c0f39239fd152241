"""SQLite schema migrations, applied in order; never edit a released one.

A migration is SQL text, or a function of the connection where SQL text
cannot say it (SQLite changes a primary key only by rebuilding the table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Migration = str | Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = [
    # 1: runs and step attempts.
    """
    CREATE TABLE plait_runs (
        id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        workflow_version TEXT NOT NULL,
        status TEXT NOT NULL,
        input TEXT NOT NULL,
        output TEXT,
        error TEXT,
        idempotency_key TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        metadata TEXT,
        parent_run_id TEXT,
        parent_step_key TEXT,
        status_message TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        ready_at REAL NOT NULL,
        retried_at REAL,
        owner TEXT,
        lease_expires_at REAL,
        lease_token INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX plait_runs_idempotency ON plait_runs (namespace, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX plait_runs_ready ON plait_runs (namespace, status, ready_at);
    CREATE INDEX plait_runs_listing ON plait_runs (namespace, created_at, id);
    CREATE INDEX plait_runs_owner ON plait_runs (owner) WHERE owner IS NOT NULL;
    CREATE INDEX plait_runs_parent ON plait_runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
    CREATE TABLE plait_steps (
        run_id TEXT NOT NULL,
        step_key TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        status TEXT NOT NULL,
        input TEXT,
        output TEXT,
        error TEXT,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        PRIMARY KEY (run_id, step_key, attempt)
    ) WITHOUT ROWID;
    """,
]

MIGRATIONS.append(
    # 2: durable waits (timers, event waits, polls, suspensions) and events sent to runs.
    """
    ALTER TABLE plait_runs ADD COLUMN wait_info TEXT;
    CREATE TABLE plait_waits (
        run_id TEXT NOT NULL,
        step_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        wake_at REAL,
        deadline REAL,
        event_name TEXT,
        state TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, step_key)
    ) WITHOUT ROWID;
    CREATE TABLE plait_inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        event_id TEXT,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        consumed_by TEXT
    );
    CREATE INDEX plait_inbox_pending ON plait_inbox (run_id, name, id) WHERE consumed_by IS NULL;
    CREATE UNIQUE INDEX plait_inbox_dedupe ON plait_inbox (run_id, event_id) WHERE event_id IS NOT NULL;
    """
)

MIGRATIONS.append(
    # 3: queues: limits, run membership, step slots and the starts that rate limits count.
    """
    ALTER TABLE plait_runs ADD COLUMN queue TEXT;
    ALTER TABLE plait_runs ADD COLUMN concurrency_key TEXT;
    CREATE INDEX plait_runs_queue ON plait_runs (queue, status) WHERE queue IS NOT NULL;
    CREATE TABLE plait_queues (
        name TEXT PRIMARY KEY,
        concurrency INTEGER,
        rate_count INTEGER,
        rate_period REAL,
        key_concurrency INTEGER,
        priority INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE plait_slots (
        queue TEXT NOT NULL,
        holder TEXT NOT NULL,
        run_id TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (queue, holder)
    );
    CREATE TABLE plait_queue_starts (queue TEXT NOT NULL, started_at REAL NOT NULL);
    CREATE INDEX plait_queue_starts_window ON plait_queue_starts (queue, started_at);
    """
)

MIGRATIONS.append(
    # 4: the event log (outbox), webhooks and their dead letters, trace context of runs.
    """
    CREATE TABLE plait_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        run_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        step_id TEXT,
        step_key TEXT,
        attempt INTEGER,
        payload TEXT,
        created_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX plait_events_run ON plait_events (run_id, seq);
    CREATE TABLE plait_webhooks (
        id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        event_types TEXT,
        workflows TEXT,
        cursor TEXT,
        owner TEXT,
        lease_expires_at REAL,
        created_at REAL NOT NULL
    );
    CREATE TABLE plait_dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        created_at REAL NOT NULL,
        replayed_at REAL
    );
    ALTER TABLE plait_runs ADD COLUMN trace_context TEXT;
    """
)

MIGRATIONS.append(
    # 5: cron schedules; each due time fires as a run whose idempotency key names the time.
    """
    CREATE TABLE plait_schedules (
        id TEXT NOT NULL,
        namespace TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        cron TEXT NOT NULL,
        timezone TEXT NOT NULL,
        input TEXT NOT NULL,
        catch_up TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        next_fire_at REAL NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (namespace, id)
    );
    CREATE INDEX plait_schedules_due ON plait_schedules (namespace, next_fire_at);
    """
)

MIGRATIONS.append(
    # 6: API bearer tokens, stored as hashes.
    """
    CREATE TABLE plait_tokens (
        id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        scope TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    """
)


def _rebuild(conn: sqlite3.Connection, table: str, primary_key: tuple[str, ...]) -> None:
    """Recreate ``table`` with ``primary_key``, keeping every column, row and index it has now.

    Columns are read from the table itself, so columns and indexes that other
    migrations added survive whatever order migrations run in.
    """
    columns = conn.execute(f"PRAGMA table_info({table})").fetchall()
    created = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]
    indexes = [
        row[0]
        for row in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
        )
    ]
    definitions = []
    for _, name, type_, not_null, default, _ in columns:
        definition = f"{name} {type_}"
        if not_null or name in primary_key:
            definition += " NOT NULL"
        if default is not None and name not in primary_key:
            definition += f" DEFAULT {default}"
        definitions.append(definition)
    names = ", ".join(column[1] for column in columns)
    without_rowid = " WITHOUT ROWID" if created.rstrip().upper().endswith("WITHOUT ROWID") else ""
    key = ", ".join(primary_key)
    conn.execute(f"CREATE TABLE {table}_rebuilt ({', '.join(definitions)}, PRIMARY KEY ({key})){without_rowid}")
    conn.execute(f"INSERT INTO {table}_rebuilt ({names}) SELECT {names} FROM {table}")
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {table}_rebuilt RENAME TO {table}")
    for index in indexes:
        conn.execute(index)


def _run_ids_per_namespace(conn: sqlite3.Connection) -> None:
    # Every row of a run carries the run's namespace, copied from its run while ids are still unique.
    for table in ("plait_steps", "plait_waits", "plait_inbox"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN namespace TEXT NOT NULL DEFAULT ''")
        conn.execute(
            f"UPDATE {table} SET namespace = coalesce("
            f"(SELECT r.namespace FROM plait_runs r WHERE r.id = {table}.run_id), '')"
        )
    conn.execute("DROP INDEX plait_runs_parent")
    _rebuild(conn, "plait_runs", ("namespace", "id"))
    conn.execute(
        "CREATE INDEX plait_runs_parent ON plait_runs (namespace, parent_run_id) WHERE parent_run_id IS NOT NULL"
    )
    _rebuild(conn, "plait_steps", ("namespace", "run_id", "step_key", "attempt"))
    _rebuild(conn, "plait_waits", ("namespace", "run_id", "step_key"))
    conn.execute("DROP INDEX plait_inbox_pending")
    conn.execute("DROP INDEX plait_inbox_dedupe")
    conn.execute(
        "CREATE INDEX plait_inbox_pending ON plait_inbox (namespace, run_id, name, id) WHERE consumed_by IS NULL"
    )
    conn.execute(
        "CREATE UNIQUE INDEX plait_inbox_dedupe ON plait_inbox (namespace, run_id, event_id) WHERE event_id IS NOT NULL"
    )
    conn.execute("DROP INDEX plait_events_run")
    conn.execute("CREATE UNIQUE INDEX plait_events_run ON plait_events (namespace, run_id, seq)")


# 7 (run ids per namespace): a run is named by (namespace, id), so two namespaces can each have run "r1".
MIGRATIONS.append(_run_ids_per_namespace)

MIGRATIONS.append(
    # 8 (workflow documents): every version of every document, with the ops that made it.
    """
    CREATE TABLE plait_documents (
        namespace TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        hash TEXT NOT NULL,
        body TEXT NOT NULL,
        ops TEXT,
        actor TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (namespace, id, version)
    );
    """
)

MIGRATIONS.append(
    # 9 (AI usage and budgets): one row per model call, the run's totals and its own budget.
    # Clustered by run (WITHOUT ROWID, no other index): a step's commit with usage then touches one
    # more table page and the run's row, not four pages; reports over time scan the table.
    """
    CREATE TABLE plait_usage (
        namespace TEXT NOT NULL,
        run_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        step_key TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        model TEXT NOT NULL,
        provider TEXT,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_nanos INTEGER,
        cost_source TEXT NOT NULL,
        price_version TEXT,
        prompt TEXT,
        response TEXT,
        carried INTEGER NOT NULL DEFAULT 0,
        day TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (namespace, run_id, step_key, attempt, seq)
    ) WITHOUT ROWID;
    ALTER TABLE plait_runs ADD COLUMN usage_input_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE plait_runs ADD COLUMN usage_output_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE plait_runs ADD COLUMN usage_cost_nanos INTEGER;
    ALTER TABLE plait_runs ADD COLUMN usage_calls INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE plait_runs ADD COLUMN budget TEXT;
    """
)

MIGRATIONS.append(
    # 10 (cancel reasons): why a run was cancelled (engine.cancel(run_id, reason=...)).
    """
    ALTER TABLE plait_runs ADD COLUMN cancel_reason TEXT;
    """
)

MIGRATIONS.append(
    # 11 (step config): the settings per step id a run was started with.
    """
    ALTER TABLE plait_runs ADD COLUMN config TEXT;
    """
)

MIGRATIONS.append(
    # 12 (artifacts): named outputs of steps; small ones inline, large ones in the blob store.
    """
    CREATE TABLE plait_artifacts (
        namespace TEXT NOT NULL,
        run_id TEXT NOT NULL,
        key TEXT NOT NULL,
        step_id TEXT NOT NULL,
        step_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        data BLOB,
        blob TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (namespace, run_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX plait_artifacts_blob ON plait_artifacts (blob) WHERE blob IS NOT NULL;
    """
)

MIGRATIONS.append(
    # 13 (triggers and windows): stored completion triggers, schedule windows, webhook headers/timeout/pause.
    """
    CREATE TABLE plait_triggers (
        namespace TEXT NOT NULL,
        id TEXT NOT NULL,
        source_workflow_id TEXT NOT NULL,
        target_workflow_id TEXT NOT NULL,
        statuses TEXT NOT NULL,
        has_input_from INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        PRIMARY KEY (namespace, id)
    );
    CREATE INDEX plait_triggers_source ON plait_triggers (namespace, source_workflow_id);
    ALTER TABLE plait_schedules ADD COLUMN start_at REAL;
    ALTER TABLE plait_schedules ADD COLUMN until REAL;
    ALTER TABLE plait_webhooks ADD COLUMN headers TEXT;
    ALTER TABLE plait_webhooks ADD COLUMN timeout REAL;
    ALTER TABLE plait_webhooks ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    """
)

MIGRATIONS.append(
    # 14 (recipes and the planner): stored recipes with document bodies, shared by every process.
    """
    CREATE TABLE plait_recipes (
        namespace TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (namespace, id)
    );
    """
)


def _events_without_autoincrement(conn: sqlite3.Connection) -> None:
    """15: event ids without AUTOINCREMENT, which wrote one more page (sqlite_sequence) in every step's commit.

    Without it SQLite hands out the largest id plus one, so ids stay increasing
    (the feed's cursor) as long as the newest event row is never deleted:
    pruning keeps it. Here the highest id ever handed out is kept as a row
    too, when pruning had already removed it, so no id is ever handed out twice.
    """
    high = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'plait_events'").fetchone()
    _rebuild(conn, "plait_events", ("id",))  # an INTEGER primary key of its own: the rowid, without AUTOINCREMENT
    newest = conn.execute("SELECT max(id) FROM plait_events").fetchone()[0] or 0
    if high is not None and high[0] > newest:
        # In a namespace nobody can name over HTTP or JSON (a NUL), so no reader meets it.
        conn.execute(
            "INSERT INTO plait_events (id, namespace, run_id, workflow_id, seq, type, created_at) "
            "VALUES (?, char(0), '', '', 0, 'plait.highest_id', 0)",
            (high[0],),
        )


MIGRATIONS.append(_events_without_autoincrement)
