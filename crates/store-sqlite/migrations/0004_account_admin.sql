-- Site administration (`chatterly users …`): disabled accounts and site
-- administrators. Numbered 0004: 0003 is taken by read state.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
ALTER TABLE users ADD COLUMN site_admin INTEGER NOT NULL DEFAULT 0 CHECK (site_admin IN (0, 1));
