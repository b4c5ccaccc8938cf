-- Read state and mentions (see crates/store/SCHEMA.md).

-- The read-receipts setting: true sends one's receipts (and shows others'),
-- false neither.
ALTER TABLE users ADD COLUMN read_receipts boolean NOT NULL DEFAULT true;

-- Each membership's positions in its conversation's seq: every message up to
-- last_read_seq is read, up to last_delivered_seq delivered (never below the
-- read one). Both only move forward (GREATEST under the row lock). A send
-- moves its sender's to the new message in the sending statement, so no
-- message after a member's last_read_seq is their own.
ALTER TABLE conversation_members
    ADD COLUMN last_read_seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_delivered_seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN read_at timestamptz;
-- What existed before read state was kept counts as read.
UPDATE conversation_members m
SET last_read_seq = c.last_seq, last_delivered_seq = c.last_seq
FROM conversations c
WHERE c.id = m.conversation_id;

-- Who a message mentions: the user ids its content names with @username
-- (NULL for none) and an admin's broadcast (1 @channel, 2 @here). Adding
-- nullable columns without a default rewrites no partition (and a CHECK
-- would scan them all: the store refuses unknown values when reading).
ALTER TABLE messages
    ADD COLUMN mentions bigint[],
    ADD COLUMN broadcast smallint;

-- The deleted messages, by position: the unread count is last_seq -
-- last_read_seq minus the deletions after the position. A plain table rather
-- than a partial index on messages, because on the partitioned table that
-- count would probe every monthly partition once per conversation.
CREATE TABLE message_deletions (
    conversation_id bigint NOT NULL,
    seq             bigint NOT NULL,
    CONSTRAINT message_deletions_pkey PRIMARY KEY (conversation_id, seq)
);
-- What existed before: messages already deleted.
INSERT INTO message_deletions (conversation_id, seq)
SELECT conversation_id, seq FROM messages WHERE deleted_at IS NOT NULL
ON CONFLICT DO NOTHING;

-- One row per (mentioned user, message); removed when the message is
-- deleted, replaced when it is edited. seq is the message's, copied so the
-- mention count after a read position is a range of the counting index;
-- message_created_at prunes the message lookup to one partition.
CREATE TABLE mentions (
    user_id            bigint NOT NULL REFERENCES users (id),
    message_id         bigint NOT NULL,
    message_created_at timestamptz NOT NULL,
    conversation_id    bigint NOT NULL,
    seq                bigint NOT NULL,
    CONSTRAINT mentions_pkey PRIMARY KEY (user_id, message_id)
);
-- mention_count: (user, conversation, seq > last_read_seq).
CREATE INDEX mentions_user_conversation_seq_idx ON mentions (user_id, conversation_id, seq);
-- Edits and deletes replace a message's rows.
CREATE INDEX mentions_message_id_idx ON mentions (message_id);
