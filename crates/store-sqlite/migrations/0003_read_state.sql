-- Read state and mentions (see crates/store/SCHEMA.md). Same conventions as
-- 0001: INTEGER Unix milliseconds, enums as small integers.

-- The read-receipts setting: 1 sends one's receipts (and shows others'), 0
-- neither.
ALTER TABLE users ADD COLUMN read_receipts INTEGER NOT NULL DEFAULT 1
    CHECK (read_receipts IN (0, 1));

-- Each membership's positions in its conversation's seq: every message up to
-- last_read_seq is read, up to last_delivered_seq delivered (never below the
-- read one). Both only move forward. A send moves its sender's to the new
-- message, so no message after a member's last_read_seq is their own.
ALTER TABLE conversation_members ADD COLUMN last_read_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversation_members ADD COLUMN last_delivered_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversation_members ADD COLUMN read_at INTEGER;
-- What existed before read state was kept counts as read.
UPDATE conversation_members
SET last_read_seq = (SELECT c.last_seq FROM conversations c WHERE c.id = conversation_id),
    last_delivered_seq = (SELECT c.last_seq FROM conversations c WHERE c.id = conversation_id);

-- Who a message mentions: a JSON array of the user ids its content names
-- with @username (NULL for none), and an admin's broadcast (1 @channel,
-- 2 @here). The rows below are what counts.
ALTER TABLE messages ADD COLUMN mentions TEXT;
ALTER TABLE messages ADD COLUMN broadcast INTEGER CHECK (broadcast IN (1, 2));

-- The unread count is last_seq - last_read_seq minus the deleted messages
-- after the position: this index holds only deleted messages, so that count
-- is a range of (usually) nothing.
CREATE INDEX messages_deleted_seq ON messages (conversation_id, seq)
    WHERE deleted_at IS NOT NULL;

-- One row per (mentioned user, message); removed when the message is
-- deleted, replaced when it is edited. seq is the message's, copied so the
-- mention count after a read position is a range of the counting index.
CREATE TABLE mentions (
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    message_id      INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (user_id, message_id)
) WITHOUT ROWID;
-- mention_count: (user, conversation, seq > last_read_seq).
CREATE INDEX mentions_user_conversation_seq ON mentions (user_id, conversation_id, seq);
-- Edits and deletes replace a message's rows; also lets the cascade from
-- messages act without a scan.
CREATE INDEX mentions_message_id ON mentions (message_id);
