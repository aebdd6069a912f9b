-- The HTTP request that caused the event (its X-Request-Id), sent on as a Kafka header
-- so the notification-service's log lines of the email name it too.
ALTER TABLE outbox_events ADD COLUMN request_id text CHECK (length(request_id) <= 128);
