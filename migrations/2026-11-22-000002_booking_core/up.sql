-- Clinics, doctors, slots, appointments, reviews and booking idempotency keys.
-- The two invariants that matter most live here, not in application code:
--   * a doctor's slots never overlap (exclusion constraint over half-open ranges);
--   * a slot has at most one active appointment (partial unique index).

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE clinics (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    city       text NOT NULL CHECK (length(city) BETWEEN 1 AND 100),
    address    text NOT NULL CHECK (length(address) BETWEEN 1 AND 300),
    time_zone  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clinics_city_idx ON clinics (lower(city));

CREATE TABLE doctors (
    id                  uuid PRIMARY KEY,
    full_name           text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
    specialty           text NOT NULL CHECK (length(specialty) BETWEEN 1 AND 100),
    clinic_id           uuid NOT NULL REFERENCES clinics (id),
    status              text NOT NULL CHECK (status IN ('active', 'on_leave', 'inactive')),
    bio                 text NOT NULL DEFAULT '' CHECK (length(bio) <= 5000),
    years_of_experience integer NOT NULL DEFAULT 0 CHECK (years_of_experience BETWEEN 0 AND 80),
    user_id             uuid UNIQUE REFERENCES users (id) ON DELETE SET NULL,
    rating_sum          bigint NOT NULL DEFAULT 0,
    rating_count        integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX doctors_full_name_trgm_idx ON doctors USING gin (full_name gin_trgm_ops);
CREATE INDEX doctors_specialty_idx ON doctors (lower(specialty));
CREATE INDEX doctors_clinic_idx ON doctors (clinic_id);
CREATE INDEX doctors_name_order_idx ON doctors (full_name, id);

CREATE TABLE slots (
    id         uuid PRIMARY KEY,
    doctor_id  uuid NOT NULL REFERENCES doctors (id) ON DELETE CASCADE,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    status     text NOT NULL CHECK (status IN ('available', 'booked', 'blocked')),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT slots_ends_after_start CHECK (ends_at > starts_at),
    CONSTRAINT slots_no_overlap EXCLUDE USING gist (
        doctor_id WITH =,
        tstzrange(starts_at, ends_at, '[)') WITH &&
    )
);
CREATE INDEX slots_doctor_starts_idx ON slots (doctor_id, starts_at);
CREATE INDEX slots_available_starts_idx ON slots (doctor_id, starts_at) WHERE status = 'available';

CREATE TABLE appointments (
    id            uuid PRIMARY KEY,
    slot_id       uuid NOT NULL REFERENCES slots (id),
    patient_id    uuid NOT NULL REFERENCES users (id),
    doctor_id     uuid NOT NULL REFERENCES doctors (id),
    status        text NOT NULL CHECK (status IN ('booked', 'cancelled', 'completed', 'no_show')),
    reason        text NOT NULL DEFAULT '' CHECK (length(reason) <= 1000),
    cancel_reason text CHECK (length(cancel_reason) <= 1000),
    cancelled_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- At most one active appointment per slot, whatever the application does.
CREATE UNIQUE INDEX appointments_one_active_per_slot ON appointments (slot_id) WHERE status = 'booked';
CREATE INDEX appointments_patient_idx ON appointments (patient_id, created_at DESC);
CREATE INDEX appointments_doctor_idx ON appointments (doctor_id);

CREATE TABLE reviews (
    id             uuid PRIMARY KEY,
    doctor_id      uuid NOT NULL REFERENCES doctors (id) ON DELETE CASCADE,
    patient_id     uuid NOT NULL REFERENCES users (id),
    appointment_id uuid NOT NULL UNIQUE REFERENCES appointments (id),
    rating         smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    text           text NOT NULL CHECK (length(text) <= 2000),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reviews_doctor_idx ON reviews (doctor_id, created_at DESC);

-- A retried booking with the same Idempotency-Key returns the original appointment.
CREATE TABLE booking_idempotency (
    patient_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key            text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash   text NOT NULL,
    appointment_id uuid NOT NULL REFERENCES appointments (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, key)
);
