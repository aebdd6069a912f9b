-- One row per event the notification-service has taken on. It is the de-duplication
-- record: an event whose row says `sent` is never emailed again, however often Kafka
-- delivers it (redelivery after a crash, a rebalance, a DLQ replay).
CREATE TABLE deliveries (
    event_id    uuid        PRIMARY KEY,
    event_type  text        NOT NULL,
    recipient   text        NOT NULL,
    -- `sending`: a consumer has claimed the event and is talking to SMTP.
    -- `sent`: the SMTP server accepted the email.
    status      text        NOT NULL CHECK (status IN ('sending', 'sent')),
    claimed_by  uuid        NOT NULL,
    claimed_at  timestamptz NOT NULL,
    -- How often a stale `sending` claim (its consumer died mid-send) was taken over.
    takeovers   integer     NOT NULL DEFAULT 0,
    attempts    integer     NOT NULL DEFAULT 0,
    sent_at     timestamptz,
    source      text        NOT NULL              -- topic/partition/offset it came from
);

CREATE INDEX deliveries_sent_at ON deliveries (sent_at);
