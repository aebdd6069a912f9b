-- The latest version of each appointment seen in any event (booked = 1, each
-- reschedule or cancellation + 1). A reminder carrying an older version is stale and
-- is not sent.
CREATE TABLE appointment_versions (
    appointment_id uuid        PRIMARY KEY,
    version        integer     NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
