-- Chatterly's SQLite schema (see crates/store/SCHEMA.md for the logical one).
-- Timestamps are INTEGER Unix milliseconds (UTC). Every id is
-- INTEGER PRIMARY KEY AUTOINCREMENT so an id is never reused: history cursors
-- and client caches rely on ids only ever growing.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    email           TEXT    NOT NULL,
    username        TEXT    NOT NULL,
    display_name    TEXT,
    avatar_url      TEXT,
    password_hash   TEXT    NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_at       INTEGER,
    last_seen_at    INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- The store maps a violation of these to Conflict("email" | "username") by the
-- column SQLite names in its error ("UNIQUE constraint failed: users.email").
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE UNIQUE INDEX users_username_key ON users (username);

-- The JWT denylist: a token id stays here until its token would have expired.
CREATE TABLE revoked_tokens (
    jti        TEXT    PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

CREATE TABLE conversations (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    name             TEXT,
    description      TEXT,
    created_by_id    INTEGER REFERENCES users (id) ON DELETE SET NULL,
    -- "{low_user_id}:{high_user_id}" for direct conversations, NULL otherwise
    -- (NULLs never collide): at most one direct conversation per pair.
    direct_key       TEXT UNIQUE,
    -- The seq of the newest message, 0 when there is none.
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_activity_at INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX conversations_created_by_id ON conversations (created_by_id);

CREATE TABLE conversation_members (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            INTEGER NOT NULL CHECK (role IN (0, 1)),
    joined_at       INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX conversation_members_user_id ON conversation_members (user_id);

CREATE TABLE messages (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id   INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- No cascade: history is not silently dropped with a user.
    user_id           INTEGER NOT NULL REFERENCES users (id),
    -- Per conversation, 1, 2, 3... with no gaps (assigned from
    -- conversations.last_seq in the sending transaction).
    seq               INTEGER NOT NULL,
    content           TEXT    NOT NULL,
    kind              INTEGER NOT NULL CHECK (kind IN (0, 1, 2, 3)),
    parent_message_id INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    call_session_id   INTEGER,
    client_message_id TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    edited_at         INTEGER,
    deleted_at        INTEGER
);
-- History before a message id: (conversation_id, rowid) range scan, backwards.
CREATE INDEX messages_conversation_id ON messages (conversation_id);
-- History after a seq (catch-up), and the seq guarantee itself.
CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation_id, seq);
-- Idempotent sends: one message per (sender, client message id).
CREATE UNIQUE INDEX messages_user_client_message_id
    ON messages (user_id, client_message_id) WHERE client_message_id IS NOT NULL;
-- Thread replies; also lets the parent foreign key act without a table scan.
CREATE INDEX messages_parent_message_id
    ON messages (parent_message_id) WHERE parent_message_id IS NOT NULL;

CREATE TABLE reactions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
-- One reaction per (message, user, emoji); also the lookup by message.
CREATE UNIQUE INDEX reactions_message_user_emoji ON reactions (message_id, user_id, emoji);
CREATE INDEX reactions_user_id ON reactions (user_id);
