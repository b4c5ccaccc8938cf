-- When a password reset (`chatterly users reset-password`) ended every
-- earlier session: tokens issued before it are refused.
ALTER TABLE users ADD COLUMN sessions_revoked_at timestamptz;
