-- Each conversation's newest live message, copied out of the partitioned
-- messages table so the conversation list reads it with one probe of a small
-- table's primary key. Looking it up in messages costs run-time partition
-- pruning for every conversation listed, which grows with the number of
-- monthly partitions (see BENCHMARKS.md).
--
-- Written in the statements that change what it copies: a send upserts its
-- newest message (under the conversation's row lock, so seq only grows); an
-- edit updates the copy of the message it edits; a soft delete of the copied
-- message replaces it with the newest live message before it, or removes the
-- row when there is none (the list then walks back in messages, as it does
-- for a row missing for any other reason). Edits and deletes lock this row
-- before they read, so they never copy a stale version. Retention removes
-- the rows of the messages it removes.
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
