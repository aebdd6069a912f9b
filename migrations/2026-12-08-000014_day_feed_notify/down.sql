DROP TRIGGER IF EXISTS appointments_notify_change ON appointments;
DROP FUNCTION IF EXISTS appointments_notify_change();
