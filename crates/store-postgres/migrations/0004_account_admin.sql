-- Site administration (`chatterly users …`): disabled accounts, site
-- administrators, and when a password reset ended every earlier session. Numbered 0004: 0003 is taken by read state.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
ALTER TABLE users ADD COLUMN site_admin boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN sessions_revoked_at timestamptz;
