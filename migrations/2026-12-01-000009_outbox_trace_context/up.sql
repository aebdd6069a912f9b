-- The W3C traceparent of the span that wrote the row (the request's, the scheduler's),
-- so the relay's producer span and everything downstream join the writer's trace.
ALTER TABLE outbox_events ADD COLUMN trace_parent text CHECK (length(trace_parent) <= 256);
