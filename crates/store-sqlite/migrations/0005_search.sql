-- Full-text search over message content: an FTS5 index whose text lives in
-- `messages` (external content, so the content is not stored twice and
-- snippet() reads it from there). The index holds the non-deleted messages
-- only. Triggers keep it in step, so it changes in the same transaction as
-- the send, edit, soft delete or conversation delete that changed the row.
--
-- unicode61 splits on anything but letters and digits and folds case and
-- diacritics; the prefix indexes serve `word*` queries of 2 and 3 letters
-- and more without scanning the term list.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

-- An external-content index must be told the old text to remove a row, so
-- every removal passes old.content exactly as indexed.
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN new.deleted_at IS NULL
BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, deleted_at ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content)
    SELECT 'delete', old.id, old.content WHERE old.deleted_at IS NULL;
    INSERT INTO messages_fts (rowid, content)
    SELECT new.id, new.content WHERE new.deleted_at IS NULL;
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.deleted_at IS NULL
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;

-- What existed before.
INSERT INTO messages_fts (rowid, content)
SELECT id, content FROM messages WHERE deleted_at IS NULL;
