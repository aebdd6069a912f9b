-- Where each account last logged in from (its client networks, `account:<id>:<net>`):
-- while strangers' failures hold an account's login limit, its owner keeps logging in
-- from a network it logged in from before (README, "Security notes").
CREATE TABLE login_known_clients (
    key             text PRIMARY KEY CHECK (length(key) <= 400),
    last_success_at timestamptz NOT NULL
);
