DROP TABLE appointment_reminders;
ALTER TABLE appointments DROP COLUMN version;
