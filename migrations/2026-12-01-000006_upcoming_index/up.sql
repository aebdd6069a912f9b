-- A booking checks the patient's cap on upcoming appointments with an index range scan
-- that stops at the cap, however long their history. For that the appointment carries
-- its slot's start: slot times never change, and a reschedule moves both together.
ALTER TABLE appointments ADD COLUMN starts_at timestamptz;
UPDATE appointments a SET starts_at = s.starts_at FROM slots s WHERE s.id = a.slot_id;
ALTER TABLE appointments ALTER COLUMN starts_at SET NOT NULL;
CREATE INDEX appointments_patient_upcoming
    ON appointments (patient_id, starts_at) WHERE status = 'booked';
