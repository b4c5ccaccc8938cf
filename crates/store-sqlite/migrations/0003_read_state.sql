-- Placeholder on the `ops` branch only: main's 0003_read_state.sql takes this
-- name and replaces this file when the branches merge (the build requires
-- versions without gaps, and 0004 follows it).
SELECT 1;
