-- An e-mailed link (verification or password reset) is bound to the address it was sent
-- to and dies with every change of the account's `email` or `pending_email`, whoever
-- makes it (the user, an admin, a command, a verification): a link mailed to an old or
-- mistyped address can never again verify, change or reset the account. Enforced here
-- so that no write path can forget it; the repository also refuses a link whose
-- address is neither the account's address nor its pending one.
CREATE FUNCTION account_tokens_die_with_address() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.email IS DISTINCT FROM OLD.email
       OR NEW.pending_email IS DISTINCT FROM OLD.pending_email THEN
        UPDATE account_tokens SET used_at = now()
         WHERE user_id = NEW.id AND used_at IS NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_address_changed
    AFTER UPDATE OF email, pending_email ON users
    FOR EACH ROW EXECUTE FUNCTION account_tokens_die_with_address();

-- Links already out that went to an address the account no longer has.
UPDATE account_tokens t SET used_at = now()
  FROM users u
 WHERE t.user_id = u.id AND t.used_at IS NULL
   AND t.email <> u.email AND t.email IS DISTINCT FROM u.pending_email;
