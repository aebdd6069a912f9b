ALTER TABLE refresh_tokens DROP COLUMN session_expires_at;
