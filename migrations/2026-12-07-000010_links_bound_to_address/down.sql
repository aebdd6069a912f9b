DROP TRIGGER users_address_changed ON users;
DROP FUNCTION account_tokens_die_with_address();
