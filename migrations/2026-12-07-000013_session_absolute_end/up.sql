-- A login's absolute end: rotation slides a refresh token's own expiry, never past the
-- end its session (family) was given at login (`auth.session_max_secs`). Sessions
-- already open end 90 days after they began.
ALTER TABLE refresh_tokens ADD COLUMN session_expires_at timestamptz;
UPDATE refresh_tokens t SET session_expires_at = f.started + interval '90 days'
  FROM (SELECT family_id, min(created_at) AS started FROM refresh_tokens GROUP BY family_id) f
 WHERE t.family_id = f.family_id;
ALTER TABLE refresh_tokens ALTER COLUMN session_expires_at SET NOT NULL;
