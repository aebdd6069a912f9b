DROP INDEX appointments_patient_upcoming;
ALTER TABLE appointments DROP COLUMN starts_at;
