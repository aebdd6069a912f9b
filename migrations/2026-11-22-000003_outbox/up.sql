-- Transactional outbox: every appointment change writes its event here in the same
-- transaction; the relay publishes pending rows to Kafka and marks them published.
CREATE TABLE outbox_events (
    -- Publication order. Rows of one appointment are written under that appointment's
    -- row lock, so their seq order is their commit order.
    seq          bigserial   PRIMARY KEY,
    id           uuid        NOT NULL UNIQUE,         -- the envelope's id
    aggregate_id uuid        NOT NULL,                -- appointment id: the message key
    topic        text        NOT NULL,                -- topic without deployment prefix
    event_type   text        NOT NULL,
    payload      text        NOT NULL,                -- the exact JSON bytes published
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    -- A relay's claim: other replicas skip the row until the lease runs out.
    locked_by    uuid,
    locked_until timestamptz
);

-- The relay's scan: pending rows in order, and "is there an earlier pending row of
-- this appointment?".
CREATE INDEX outbox_events_pending ON outbox_events (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_events_pending_by_aggregate
    ON outbox_events (aggregate_id, seq) WHERE published_at IS NULL;
-- Pruning published rows after the retention period.
CREATE INDEX outbox_events_published_at
    ON outbox_events (published_at) WHERE published_at IS NOT NULL;
