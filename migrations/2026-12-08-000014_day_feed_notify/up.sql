-- The live day feed across replicas: every committed change of an appointment that
-- can move it on or off a doctor's day is announced on the channel
-- `appointment_changes`, from the changing transaction itself (NOTIFY is delivered on
-- commit, in commit order, and never for a rollback). Whatever path made the change —
-- HTTP, gRPC, a command, plain SQL — each replica's listener hears it and its day
-- watchers look the appointment up.
--
-- The payload stays small (well under NOTIFY's 8000 bytes): which appointment, whose,
-- what happened, its version, when it starts and, if it moved, when it started before
-- (so the day it left hears of it too), times in UTC whatever the writer's session
-- time zone. kind: booked, cancelled, rescheduled, or status (another status change:
-- completed, no_show; or a row inserted as such; or the version alone).
CREATE FUNCTION appointments_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    kind text;
    previous timestamptz;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := CASE WHEN NEW.status = 'booked' THEN 'booked' ELSE 'status' END;
    ELSE
        IF NEW.status IS NOT DISTINCT FROM OLD.status
           AND NEW.slot_id IS NOT DISTINCT FROM OLD.slot_id
           AND NEW.starts_at IS NOT DISTINCT FROM OLD.starts_at
           AND NEW.version IS NOT DISTINCT FROM OLD.version THEN
            RETURN NULL;
        END IF;
        IF NEW.starts_at IS DISTINCT FROM OLD.starts_at THEN
            previous := OLD.starts_at;
        END IF;
        kind := CASE
            WHEN NEW.status IS DISTINCT FROM OLD.status THEN
                CASE NEW.status WHEN 'cancelled' THEN 'cancelled'
                                WHEN 'booked' THEN 'booked'
                                ELSE 'status' END
            WHEN NEW.slot_id IS DISTINCT FROM OLD.slot_id
                 OR NEW.starts_at IS DISTINCT FROM OLD.starts_at THEN 'rescheduled'
            ELSE 'status'
        END;
    END IF;
    PERFORM pg_notify('appointment_changes', json_build_object(
        'appointment_id', NEW.id,
        'doctor_id', NEW.doctor_id,
        'kind', kind,
        'version', NEW.version,
        'starts_at', to_char(NEW.starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'previous_starts_at', to_char(previous AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    )::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER appointments_notify_change
    AFTER INSERT OR UPDATE OF status, slot_id, starts_at, version ON appointments
    FOR EACH ROW EXECUTE FUNCTION appointments_notify_change();
