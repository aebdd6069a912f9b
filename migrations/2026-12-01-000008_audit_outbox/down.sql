DROP INDEX outbox_events_pending;
DROP INDEX outbox_events_pending_by_aggregate;
CREATE INDEX outbox_events_pending ON outbox_events (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_events_pending_by_aggregate
    ON outbox_events (aggregate_id, seq) WHERE published_at IS NULL;
ALTER TABLE outbox_events DROP COLUMN sink;
