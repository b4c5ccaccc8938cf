-- Full-text search over message content.
--
-- The text search configuration (`--search-language`, `simple` by default:
-- no stemming, no stop words, so names and code search as typed) is the
-- result of this function. Statements call it rather than binding the name,
-- so every instance writes and queries with the one the database holds; the
-- store replaces the function (and re-indexes) when started with another
-- language (PgStore::set_search_language). IMMUTABLE so the planner folds it
-- to a constant, and a replacement invalidates the plans that folded it.
CREATE FUNCTION chatterly_search_language() RETURNS regconfig
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 'simple'::regconfig $$;

-- Written by the statements that send and edit a message and set to NULL by
-- its soft delete, so the index changes in their transaction and holds the
-- non-deleted messages only. Maintained rather than GENERATED: a generated
-- column's expression is fixed by the migration, the language is not.
-- A nullable column without a default rewrites no partition.
ALTER TABLE messages ADD COLUMN search_vector tsvector;

UPDATE messages SET search_vector = to_tsvector(chatterly_search_language(), content)
WHERE deleted_at IS NULL;

-- On the partitioned table: every partition gets its own GIN index, and the
-- partitions created later (LIKE messages, then ATTACH) get one when attached.
CREATE INDEX messages_search_vector_idx ON messages USING gin (search_vector);
