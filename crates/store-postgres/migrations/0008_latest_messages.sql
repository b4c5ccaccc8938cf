-- Each conversation's newest live message, copied out of the partitioned
-- messages table so the conversation list reads it with one probe of a small
-- table's primary key. Looking it up in messages costs run-time partition
-- pruning for every conversation listed, which grows with the number of
-- monthly partitions (see BENCHMARKS.md).
--
-- Written in the statements that change what it copies: a send upserts its
-- newest message (under the conversation's row lock, so seq only grows); an
-- edit updates the copy of the message it edits; a soft delete of the copied
-- message removes the row. The list uses a copy only when it is the message
-- at the conversation's last_seq, and otherwise walks back in messages (the
-- newest message deleted, or sent by an instance of an earlier version
-- during a rolling upgrade), so a stale copy is never shown. Retention
-- removes the copies of what it removes.
--
-- No foreign keys, as for messages: integrity is the store's (deleting a
-- conversation deletes its row).
CREATE TABLE latest_messages (
    conversation_id   bigint PRIMARY KEY,
    id                bigint NOT NULL,
    user_id           bigint NOT NULL,
    seq               bigint NOT NULL,
    content           text NOT NULL,
    kind              smallint NOT NULL,
    parent_message_id bigint,
    call_session_id   bigint,
    client_message_id text,
    created_at        timestamptz NOT NULL,
    edited_at         timestamptz,
    mentions          bigint[],
    broadcast         smallint
);

-- What existed before: each conversation's newest live message, one index
-- walk per conversation.
INSERT INTO latest_messages (conversation_id, id, user_id, seq, content, kind,
                             parent_message_id, call_session_id, client_message_id,
                             created_at, edited_at, mentions, broadcast)
SELECT c.id, l.id, l.user_id, l.seq, l.content, l.kind, l.parent_message_id,
       l.call_session_id, l.client_message_id, l.created_at, l.edited_at, l.mentions,
       l.broadcast
FROM conversations c
CROSS JOIN LATERAL (
    SELECT * FROM messages
    WHERE conversation_id = c.id AND deleted_at IS NULL
    ORDER BY seq DESC LIMIT 1
) l;
