-- The outbox has two sinks: events for Kafka, and audit records for the audit-service.
-- Each change writes its audit record in the same transaction as the change; one relay
-- design ships each sink's rows.
ALTER TABLE outbox_events ADD COLUMN sink text NOT NULL DEFAULT 'kafka'
    CHECK (sink IN ('kafka', 'audit'));

DROP INDEX outbox_events_pending;
DROP INDEX outbox_events_pending_by_aggregate;
CREATE INDEX outbox_events_pending ON outbox_events (sink, seq) WHERE published_at IS NULL;
CREATE INDEX outbox_events_pending_by_aggregate
    ON outbox_events (sink, aggregate_id, seq) WHERE published_at IS NULL;
