-- Attachments: uploaded files (see crates/store/SCHEMA.md). Same conventions
-- as 0001: INTEGER Unix milliseconds.
--
-- The bytes live in the blob store under blob_key (and a preview under
-- thumbnail_key); a row is written only after they are stored. A send
-- attaches rows by setting message_id and conversation_id, once (the update
-- requires message_id IS NULL). deleted_at hides a row for good (its message
-- or conversation was deleted, retention removed the message, or the
-- cleanup claimed an upload never attached); the cleanup job then deletes
-- the blobs and the row. No foreign key to messages or conversations: a
-- hidden row outlives them until its blobs are gone.
CREATE TABLE attachments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    size            INTEGER NOT NULL CHECK (size >= 0),
    width           INTEGER,
    height          INTEGER,
    blob_key        TEXT NOT NULL,
    thumbnail_key   TEXT,
    message_id      INTEGER,
    conversation_id INTEGER,
    created_at      INTEGER NOT NULL,
    deleted_at      INTEGER
);
-- A page of history's attachments.
CREATE INDEX attachments_message_id ON attachments (message_id) WHERE message_id IS NOT NULL;
-- Hiding a deleted conversation's attachments.
CREATE INDEX attachments_conversation_id ON attachments (conversation_id)
    WHERE conversation_id IS NOT NULL;
-- The quota: the bytes of a user's visible attachments.
CREATE INDEX attachments_user_id ON attachments (user_id, size) WHERE deleted_at IS NULL;
-- The cleanup: uploads never attached, by age; and the hidden rows.
CREATE INDEX attachments_unattached ON attachments (created_at)
    WHERE message_id IS NULL AND deleted_at IS NULL;
CREATE INDEX attachments_hidden ON attachments (deleted_at) WHERE deleted_at IS NOT NULL;
