"""PostgreSQL schema migrations, applied in order under an advisory lock; never edit a released one."""

MIGRATIONS: list[str] = [
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
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        ready_at DOUBLE PRECISION NOT NULL,
        retried_at DOUBLE PRECISION,
        owner TEXT,
        lease_expires_at DOUBLE PRECISION,
        lease_token BIGINT NOT NULL DEFAULT 0
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
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, step_key, attempt)
    );
    """,
    # 2: durable waits and events sent to runs.
    """
    ALTER TABLE plait_runs ADD COLUMN wait_info TEXT;
    CREATE TABLE plait_waits (
        run_id TEXT NOT NULL,
        step_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        wake_at DOUBLE PRECISION,
        deadline DOUBLE PRECISION,
        event_name TEXT,
        state TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, step_key)
    );
    CREATE TABLE plait_inbox (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        event_id TEXT,
        payload TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        consumed_by TEXT
    );
    CREATE INDEX plait_inbox_pending ON plait_inbox (run_id, name, id) WHERE consumed_by IS NULL;
    CREATE UNIQUE INDEX plait_inbox_dedupe ON plait_inbox (run_id, event_id) WHERE event_id IS NOT NULL;
    """,
    # 3: queues: limits, run membership, step slots and the starts that rate limits count.
    """
    ALTER TABLE plait_runs ADD COLUMN queue TEXT;
    ALTER TABLE plait_runs ADD COLUMN concurrency_key TEXT;
    CREATE INDEX plait_runs_queue ON plait_runs (queue, status) WHERE queue IS NOT NULL;
    CREATE TABLE plait_queues (
        name TEXT PRIMARY KEY,
        concurrency INTEGER,
        rate_count INTEGER,
        rate_period DOUBLE PRECISION,
        key_concurrency INTEGER,
        priority BOOLEAN NOT NULL DEFAULT TRUE
    );
    CREATE TABLE plait_slots (
        queue TEXT NOT NULL,
        holder TEXT NOT NULL,
        run_id TEXT NOT NULL,
        acquired_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (queue, holder)
    );
    CREATE TABLE plait_queue_starts (queue TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL);
    CREATE INDEX plait_queue_starts_window ON plait_queue_starts (queue, started_at);
    """,
    # 4: the event log (outbox), webhooks and their dead letters, trace context of runs.
    # txid orders the global feed by commit: a reader only takes events of transactions older than
    # every one still running, so an event can never appear behind a cursor that already passed it.
    """
    CREATE TABLE plait_events (
        id BIGSERIAL PRIMARY KEY,
        txid XID8 NOT NULL DEFAULT pg_current_xact_id(),
        namespace TEXT NOT NULL,
        run_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        step_id TEXT,
        step_key TEXT,
        attempt INTEGER,
        payload TEXT,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE UNIQUE INDEX plait_events_run ON plait_events (run_id, seq);
    CREATE INDEX plait_events_feed ON plait_events (namespace, txid, id);
    CREATE TABLE plait_webhooks (
        id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        event_types TEXT,
        workflows TEXT,
        cursor TEXT,
        owner TEXT,
        lease_expires_at DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE plait_dead_letters (
        id BIGSERIAL PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        event_id BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        replayed_at DOUBLE PRECISION
    );
    ALTER TABLE plait_runs ADD COLUMN trace_context TEXT;
    """,
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
        next_fire_at DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, id)
    );
    CREATE INDEX plait_schedules_due ON plait_schedules (namespace, next_fire_at);
    """,
    # 6: API bearer tokens, stored as hashes.
    """
    CREATE TABLE plait_tokens (
        id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        scope TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    """,
]

MIGRATIONS.append(
    # 7 (run ids per namespace): a run is named by (namespace, id), so two namespaces can each have run "r1".
    # Every row of a run carries the run's namespace, copied from its run while ids are still unique.
    """
    -- run ids per namespace
    ALTER TABLE plait_steps ADD COLUMN namespace TEXT;
    ALTER TABLE plait_waits ADD COLUMN namespace TEXT;
    ALTER TABLE plait_inbox ADD COLUMN namespace TEXT;
    UPDATE plait_steps t SET namespace = r.namespace FROM plait_runs r WHERE r.id = t.run_id;
    UPDATE plait_waits t SET namespace = r.namespace FROM plait_runs r WHERE r.id = t.run_id;
    UPDATE plait_inbox t SET namespace = r.namespace FROM plait_runs r WHERE r.id = t.run_id;
    UPDATE plait_steps SET namespace = '' WHERE namespace IS NULL;
    UPDATE plait_waits SET namespace = '' WHERE namespace IS NULL;
    UPDATE plait_inbox SET namespace = '' WHERE namespace IS NULL;
    ALTER TABLE plait_runs DROP CONSTRAINT plait_runs_pkey, ADD PRIMARY KEY (namespace, id);
    ALTER TABLE plait_steps ALTER COLUMN namespace SET NOT NULL, DROP CONSTRAINT plait_steps_pkey,
        ADD PRIMARY KEY (namespace, run_id, step_key, attempt);
    ALTER TABLE plait_waits ALTER COLUMN namespace SET NOT NULL, DROP CONSTRAINT plait_waits_pkey,
        ADD PRIMARY KEY (namespace, run_id, step_key);
    ALTER TABLE plait_inbox ALTER COLUMN namespace SET NOT NULL;
    DROP INDEX plait_runs_parent;
    CREATE INDEX plait_runs_parent ON plait_runs (namespace, parent_run_id) WHERE parent_run_id IS NOT NULL;
    DROP INDEX plait_inbox_pending;
    DROP INDEX plait_inbox_dedupe;
    CREATE INDEX plait_inbox_pending ON plait_inbox (namespace, run_id, name, id) WHERE consumed_by IS NULL;
    CREATE UNIQUE INDEX plait_inbox_dedupe ON plait_inbox (namespace, run_id, event_id) WHERE event_id IS NOT NULL;
    DROP INDEX plait_events_run;
    CREATE UNIQUE INDEX plait_events_run ON plait_events (namespace, run_id, seq);
    """
)

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
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, id, version)
    );
    """
)

MIGRATIONS.append(
    # 9 (AI usage and budgets): one row per model call, the run's totals and its own budget.
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
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cache_read_tokens BIGINT NOT NULL,
        cache_write_tokens BIGINT NOT NULL,
        reasoning_tokens BIGINT NOT NULL,
        cost_nanos BIGINT,
        cost_source TEXT NOT NULL,
        price_version TEXT,
        prompt TEXT,
        response TEXT,
        carried INTEGER NOT NULL DEFAULT 0,
        day TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, run_id, step_key, attempt, seq)
    );
    CREATE INDEX plait_usage_time ON plait_usage (namespace, created_at);
    ALTER TABLE plait_runs ADD COLUMN usage_input_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE plait_runs ADD COLUMN usage_output_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE plait_runs ADD COLUMN usage_cost_nanos BIGINT;
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
        size BIGINT NOT NULL,
        data BYTEA,
        blob TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, run_id, key)
    );
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
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, id)
    );
    CREATE INDEX plait_triggers_source ON plait_triggers (namespace, source_workflow_id);
    ALTER TABLE plait_schedules ADD COLUMN start_at DOUBLE PRECISION;
    ALTER TABLE plait_schedules ADD COLUMN until DOUBLE PRECISION;
    ALTER TABLE plait_webhooks ADD COLUMN headers TEXT;
    ALTER TABLE plait_webhooks ADD COLUMN timeout DOUBLE PRECISION;
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
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, id)
    );
    """
)

MIGRATIONS.append(
    # 15: nothing here (SQLite's event ids lost AUTOINCREMENT; a BIGSERIAL costs no extra write).
    "SELECT 1"
)
