-- Reminders: durable rows written in the same transaction as the booking (replaced on
-- reschedule, removed on cancel); the scheduler claims due rows with SKIP LOCKED and
-- turns each into exactly one `appointment.reminder` event in the outbox.

-- Every change of an appointment (booking = 1, each reschedule or cancellation + 1).
-- Events carry it; a reminder whose version is no longer current is stale.
ALTER TABLE appointments ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1);

CREATE TABLE appointment_reminders (
    id             uuid        PRIMARY KEY,
    appointment_id uuid        NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,
    -- The configured offset that produced it (`24h`, `2h`, `1d`…).
    offset_label   text        NOT NULL CHECK (length(offset_label) BETWEEN 1 AND 32),
    due_at         timestamptz NOT NULL,
    -- The appointment's version it was scheduled for.
    version        integer     NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Set by the scheduler in the transaction that wrote the event to the outbox.
    published_at   timestamptz,
    event_id       uuid        UNIQUE,
    UNIQUE (appointment_id, offset_label, version),
    CHECK ((published_at IS NULL) = (event_id IS NULL))
);

-- The scheduler's scan: due, unpublished rows, oldest first.
CREATE INDEX appointment_reminders_due ON appointment_reminders (due_at) WHERE published_at IS NULL;
CREATE INDEX appointment_reminders_appointment ON appointment_reminders (appointment_id);

-- Appointments booked before reminders existed get the default ones (24 h and 2 h
-- before), where those are still ahead.
INSERT INTO appointment_reminders (id, appointment_id, offset_label, due_at, version)
SELECT gen_random_uuid(), a.id, o.label, s.starts_at - o.before, a.version
FROM appointments a
JOIN slots s ON s.id = a.slot_id
CROSS JOIN (VALUES ('24h', interval '24 hours'), ('2h', interval '2 hours')) AS o (label, before)
WHERE a.status = 'booked' AND s.starts_at - o.before > now();
