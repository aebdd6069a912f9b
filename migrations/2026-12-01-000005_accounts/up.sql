-- Verified e-mail addresses, address changes awaiting verification, and the single-use
-- tokens of verification and password-reset links.

ALTER TABLE users
    ADD COLUMN email_verified_at timestamptz,
    -- An address the user asked to change to: it replaces `email` only once a link
    -- sent to it has been followed.
    ADD COLUMN pending_email text CHECK (pending_email = lower(pending_email));

-- Accounts older than verification keep booking: they have received our e-mails at
-- their address all along (README, "Accounts").
UPDATE users SET email_verified_at = created_at;

CREATE TABLE account_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    -- SHA-256 of the secret in the link; the secret itself is never stored.
    token_hash  text NOT NULL,
    -- The address the link was sent to: following it proves control of this address.
    email       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    -- Set when the link is followed, or when a newer link of the same purpose replaces it.
    used_at     timestamptz
);
CREATE UNIQUE INDEX account_tokens_token_hash_key ON account_tokens (token_hash);
CREATE INDEX account_tokens_live_idx ON account_tokens (user_id, purpose) WHERE used_at IS NULL;
