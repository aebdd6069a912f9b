-- The audit log: records (the leaves of the Merkle tree, by leaf index) and the signed
-- checkpoints over it. Both tables are append-only, enforced here: UPDATE, DELETE and
-- TRUNCATE are refused by triggers, whoever the caller is (only a superuser who
-- disables triggers can get past them, and `audit-service verify` then tells).

CREATE TABLE audit_records (
    idx          BIGINT PRIMARY KEY CHECK (idx >= 0),
    id           UUID NOT NULL UNIQUE,
    actor_kind   TEXT NOT NULL CHECK (actor_kind IN ('user', 'system')),
    -- The user's UUID (lowercase, hyphenated) or the system job's name.
    actor_id     TEXT NOT NULL,
    actor_role   TEXT NOT NULL,
    action       TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    -- [{"field": …, "before": JSON text or null, "after": JSON text or null}, …] in order.
    changes      JSONB NOT NULL,
    source       TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    appended_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- SHA-256(0x00 || canonical bytes): what the tree was built from. `verify`
    -- recomputes it from the other columns and never trusts it.
    leaf_hash    BYTEA NOT NULL CHECK (length(leaf_hash) = 32)
);

-- Query: newest first under each filter.
CREATE INDEX audit_records_entity ON audit_records (entity_type, entity_id, occurred_at DESC, idx DESC);
CREATE INDEX audit_records_actor ON audit_records (actor_id, occurred_at DESC, idx DESC);
CREATE INDEX audit_records_action ON audit_records (action, occurred_at DESC, idx DESC);
CREATE INDEX audit_records_time ON audit_records (occurred_at DESC, idx DESC);

CREATE TABLE audit_checkpoints (
    tree_size    BIGINT PRIMARY KEY CHECK (tree_size > 0),
    root_hash    BYTEA NOT NULL CHECK (length(root_hash) = 32),
    origin       TEXT NOT NULL,
    issued_at    TIMESTAMPTZ NOT NULL,
    key_id       TEXT NOT NULL,
    public_key   BYTEA NOT NULL,
    signature    BYTEA NOT NULL,
    -- The exact bytes that were signed.
    signed_text  BYTEA NOT NULL
);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Statement-level, so even an UPDATE or DELETE matching no row is refused.
CREATE TRIGGER audit_records_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
