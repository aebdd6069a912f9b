-- What clinics ask for most: their own booking rules, no-shows, a waitlist whose offers
-- hold a slot, links that manage an appointment without logging in, calendar feeds.

-- Clinic policies. NULL: the service's default (`booking.*` settings). A doctor may
-- override the rules that concern their own schedule.
ALTER TABLE clinics
    ADD COLUMN min_notice_minutes      integer CHECK (min_notice_minutes BETWEEN 0 AND 525600),
    ADD COLUMN horizon_days            integer CHECK (horizon_days BETWEEN 1 AND 730),
    ADD COLUMN change_deadline_minutes integer CHECK (change_deadline_minutes BETWEEN 0 AND 525600),
    ADD COLUMN max_active_per_patient  integer CHECK (max_active_per_patient BETWEEN 1 AND 100),
    -- This many no-shows within the window stop self-service booking (NULL: never).
    ADD COLUMN no_show_limit           integer CHECK (no_show_limit BETWEEN 1 AND 100),
    ADD COLUMN no_show_window_days     integer CHECK (no_show_window_days BETWEEN 1 AND 3650),
    ADD COLUMN no_show_email           boolean NOT NULL DEFAULT false;
ALTER TABLE doctors
    ADD COLUMN min_notice_minutes      integer CHECK (min_notice_minutes BETWEEN 0 AND 525600),
    ADD COLUMN horizon_days            integer CHECK (horizon_days BETWEEN 1 AND 730),
    ADD COLUMN change_deadline_minutes integer CHECK (change_deadline_minutes BETWEEN 0 AND 525600),
    -- The doctor's calendar feed: SHA-256 of the secret in its URL (NULL: none yet).
    ADD COLUMN calendar_token_hash     text UNIQUE;

-- A patient's calendar feed.
ALTER TABLE users ADD COLUMN calendar_token_hash text UNIQUE;

-- The appointment carries its slot's end as it carries its start, so that no two
-- active appointments of one patient overlap in time, whoever the doctors: enforced
-- here like the slot rule. Attendance: who recorded the outcome of a started visit, and
-- when. The manage link's token, hashed (the token itself is never stored).
ALTER TABLE appointments
    ADD COLUMN ends_at timestamptz,
    ADD COLUMN attendance_marked_at timestamptz,
    ADD COLUMN attendance_marked_by uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN manage_token_hash text;
UPDATE appointments a SET ends_at = s.ends_at FROM slots s WHERE s.id = a.slot_id;
ALTER TABLE appointments ALTER COLUMN ends_at SET NOT NULL;
-- Whatever writes an appointment or moves it to another slot, it carries that slot's
-- times (a statement that names them gets the same values).
CREATE FUNCTION appointments_take_slot_times() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT s.starts_at, s.ends_at INTO NEW.starts_at, NEW.ends_at
      FROM slots s WHERE s.id = NEW.slot_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER appointments_take_slot_times
    BEFORE INSERT OR UPDATE OF slot_id ON appointments
    FOR EACH ROW EXECUTE FUNCTION appointments_take_slot_times();
CREATE UNIQUE INDEX appointments_manage_token_hash_key ON appointments (manage_token_hash);
-- Appointments booked before this rule that already overlap keep their history: only
-- the later of each overlapping pair is cancelled, so the constraint can hold.
UPDATE appointments a SET status = 'cancelled', cancelled_at = now(),
       cancel_reason = 'overlapped another appointment of the patient (migration 000015)'
 WHERE a.status = 'booked' AND EXISTS (
       SELECT 1 FROM appointments b
        WHERE b.patient_id = a.patient_id AND b.status = 'booked' AND b.id <> a.id
          AND tstzrange(b.starts_at, b.ends_at, '[)') && tstzrange(a.starts_at, a.ends_at, '[)')
          AND (b.created_at, b.id) < (a.created_at, a.id));
ALTER TABLE appointments ADD CONSTRAINT appointments_patient_no_overlap EXCLUDE USING gist (
    patient_id WITH =,
    tstzrange(starts_at, ends_at, '[)') WITH &&
) WHERE (status = 'booked');
CREATE INDEX appointments_patient_no_shows ON appointments (patient_id, starts_at)
    WHERE status = 'no_show';

-- The waitlist: a patient waits for a slot of a doctor between two dates (the clinic's
-- calendar days). A waiting entry with a row in `slot_holds` has an offer out: that is
-- what "offered" means, stored once.
CREATE TABLE waitlist_entries (
    id         uuid PRIMARY KEY,
    patient_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    doctor_id  uuid NOT NULL REFERENCES doctors (id) ON DELETE CASCADE,
    from_date  date NOT NULL,
    to_date    date NOT NULL,
    status     text NOT NULL CHECK (status IN ('waiting', 'booked', 'left')),
    appointment_id uuid REFERENCES appointments (id) ON DELETE SET NULL,
    -- SHA-256 of the token of the entry's latest offer: the link still finds the entry
    -- once the hold is gone (a second click on a booked offer shows the booking).
    offer_token_hash text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT waitlist_dates_ordered CHECK (to_date >= from_date)
);
-- One live entry per patient and doctor; the line is first come, first served.
CREATE UNIQUE INDEX waitlist_one_live_entry ON waitlist_entries (patient_id, doctor_id)
    WHERE status = 'waiting';
CREATE INDEX waitlist_offer_token ON waitlist_entries (offer_token_hash);
CREATE INDEX waitlist_line ON waitlist_entries (doctor_id, created_at, id)
    WHERE status = 'waiting';

-- A slot held for the entry it was offered to, until `expires_at`. While the row exists
-- nobody else can book the slot (the trigger below); the waitlist matcher deletes it
-- when it expires and offers the slot to the next in line.
CREATE TABLE slot_holds (
    slot_id    uuid PRIMARY KEY REFERENCES slots (id) ON DELETE CASCADE,
    entry_id   uuid NOT NULL UNIQUE REFERENCES waitlist_entries (id) ON DELETE CASCADE,
    patient_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the secret in the offer's link.
    token_hash text NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX slot_holds_expiry ON slot_holds (expires_at);

-- When a slot last became free: created, or freed by a cancellation, a reschedule away
-- or an unblock. The waitlist offers an entry only slots that became free after it
-- joined; a slot already free then can simply be booked.
ALTER TABLE slots ADD COLUMN available_since timestamptz NOT NULL DEFAULT now();
CREATE FUNCTION slots_mark_available_since() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'available' AND OLD.status IS DISTINCT FROM 'available' THEN
        NEW.available_since := now();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER slots_mark_available_since
    BEFORE UPDATE OF status ON slots
    FOR EACH ROW EXECUTE FUNCTION slots_mark_available_since();

-- A slot an entry was offered and let pass: never offered to that entry again.
CREATE TABLE waitlist_passes (
    entry_id uuid NOT NULL REFERENCES waitlist_entries (id) ON DELETE CASCADE,
    slot_id  uuid NOT NULL REFERENCES slots (id) ON DELETE CASCADE,
    PRIMARY KEY (entry_id, slot_id)
);

-- The hold is part of the booking rule, whatever path writes: an appointment can take
-- (or move to) a held slot only for the patient it is held for.
CREATE FUNCTION appointments_respect_holds() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'booked' AND EXISTS (
        SELECT 1 FROM slot_holds h
         WHERE h.slot_id = NEW.slot_id AND h.patient_id <> NEW.patient_id) THEN
        RAISE EXCEPTION 'slot % is held for another patient', NEW.slot_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'slot_holds_slot_held';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER appointments_respect_holds
    BEFORE INSERT OR UPDATE OF slot_id, status ON appointments
    FOR EACH ROW EXECUTE FUNCTION appointments_respect_holds();
