-- Calls, and the durable job queue (see crates/store/SCHEMA.md). Same
-- conventions as 0001: INTEGER Unix milliseconds, AUTOINCREMENT ids, enums as
-- the small integers of the models.

CREATE TABLE call_sessions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- No cascade, as for messages: a call is history.
    initiator_id    INTEGER NOT NULL REFERENCES users (id),
    -- 0 audio, 1 video.
    kind            INTEGER NOT NULL CHECK (kind IN (0, 1)),
    -- 0 calling, 1 ringing, 2 active (not over); 3 ended, 4 declined,
    -- 5 missed (final).
    status          INTEGER NOT NULL CHECK (status IN (0, 1, 2, 3, 4, 5)),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- Set by the first accept; ended_at only when a started call ends.
    started_at      INTEGER,
    ended_at        INTEGER,
    CHECK (ended_at IS NULL OR started_at IS NOT NULL)
);
-- At most one call that is not over per conversation, race-free: a second
-- create (or a transition back into these states) fails on this index, which
-- the store maps to Conflict("call"). Also serves the current-call lookup.
CREATE UNIQUE INDEX call_sessions_one_open
    ON call_sessions (conversation_id) WHERE status IN (0, 1, 2);
-- Every call of a conversation: lets the cascade from conversations (and the
-- delete in delete_conversation) find them without a table scan.
CREATE INDEX call_sessions_conversation_id ON call_sessions (conversation_id);

CREATE TABLE call_participants (
    call_session_id INTEGER NOT NULL REFERENCES call_sessions (id) ON DELETE CASCADE,
    -- No cascade, as for messages.
    user_id         INTEGER NOT NULL REFERENCES users (id),
    -- The first join; a second join of the same user keeps it.
    joined_at       INTEGER NOT NULL,
    -- Not written by the store yet (no Store method records a leave).
    left_at         INTEGER,
    PRIMARY KEY (call_session_id, user_id)
) WITHOUT ROWID;

-- The durable job queue. A job is pending (0) until claimed, running (1)
-- while a worker holds its lease, dead (2) when its last run failed; a done
-- job is deleted.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Which handler runs it (e.g. "call.missed").
    kind         TEXT    NOT NULL,
    -- The handler's arguments, JSON text, opaque to the store.
    payload      TEXT    NOT NULL,
    status       INTEGER NOT NULL CHECK (status IN (0, 1, 2)),
    -- Not claimed before this time.
    run_at       INTEGER NOT NULL,
    -- Claims so far: a claim is identified by (id, attempts), so a worker
    -- whose lease lapsed and was reclaimed can no longer complete or fail it.
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    unique_key   TEXT,
    last_error   TEXT,
    -- The lease: set exactly while running (when it lapses, another claim
    -- takes the job over).
    locked_until INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    CHECK ((status = 1) = (locked_until IS NOT NULL))
);
-- The claim: due pending jobs are a range of this, walked in (run_at, id)
-- order up to the claim's LIMIT; lapsed leases are found among the running
-- jobs (status = 1), walked the same way and filtered on locked_until. Running
-- jobs are the few in flight (workers times their claim size), so a second
-- index on locked_until would cost every claim and completion a write for
-- nothing. Also serves `list_jobs` by status.
CREATE INDEX jobs_status_run_at ON jobs (status, run_at);
-- At most one pending or running job per key (NULLs never collide): enqueueing
-- a second is a no-op (ON CONFLICT DO NOTHING on this index). A dead job
-- frees its key.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key) WHERE status IN (0, 1);
