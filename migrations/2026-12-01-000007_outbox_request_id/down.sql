ALTER TABLE outbox_events DROP COLUMN request_id;
