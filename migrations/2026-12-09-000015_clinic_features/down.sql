DROP TRIGGER appointments_take_slot_times ON appointments;
DROP FUNCTION appointments_take_slot_times();
DROP TRIGGER appointments_respect_holds ON appointments;
DROP FUNCTION appointments_respect_holds();
DROP TABLE waitlist_passes;
DROP TRIGGER slots_mark_available_since ON slots;
DROP FUNCTION slots_mark_available_since();
ALTER TABLE slots DROP COLUMN available_since;
DROP TABLE slot_holds;
DROP TABLE waitlist_entries;
DROP INDEX appointments_patient_no_shows;
ALTER TABLE appointments DROP CONSTRAINT appointments_patient_no_overlap;
DROP INDEX appointments_manage_token_hash_key;
ALTER TABLE appointments
    DROP COLUMN ends_at,
    DROP COLUMN attendance_marked_at,
    DROP COLUMN attendance_marked_by,
    DROP COLUMN manage_token_hash;
ALTER TABLE users DROP COLUMN calendar_token_hash;
ALTER TABLE doctors
    DROP COLUMN min_notice_minutes,
    DROP COLUMN horizon_days,
    DROP COLUMN change_deadline_minutes,
    DROP COLUMN calendar_token_hash;
ALTER TABLE clinics
    DROP COLUMN min_notice_minutes,
    DROP COLUMN horizon_days,
    DROP COLUMN change_deadline_minutes,
    DROP COLUMN max_active_per_patient,
    DROP COLUMN no_show_limit,
    DROP COLUMN no_show_window_days,
    DROP COLUMN no_show_email;
