-- Site administration (`chatterly users …`): disabled accounts and site
-- administrators. Numbered 0004: 0003 is taken by read state.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
ALTER TABLE users ADD COLUMN site_admin boolean NOT NULL DEFAULT false;
