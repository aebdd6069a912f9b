DROP TABLE dead_letter_window;
ALTER TABLE appointment_versions
    DROP COLUMN told_version,
    DROP COLUMN holder,
    DROP COLUMN held_until;
