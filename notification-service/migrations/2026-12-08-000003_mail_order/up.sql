-- Per-appointment order of e-mails, shared by every worker of the consumer group.
--
-- `version` (already here) is the latest version of the appointment seen in any event.
-- `told_version` is the latest version the patient has been told about: its e-mail was
-- sent, or it was decided never to be sent (dead-lettered). An appointment e-mail of
-- version v goes out only once `told_version` is v - 1 (a reminder: v); one older than
-- `told_version` is superseded and not sent. `holder` / `held_until`: the consumer that
-- is sending an e-mail of this appointment right now (one SMTP attempt), so that two
-- e-mails of one appointment are never in flight together.
ALTER TABLE appointment_versions
    ADD COLUMN told_version integer     NOT NULL DEFAULT 0,
    ADD COLUMN holder       uuid,
    ADD COLUMN held_until   timestamptz;

-- What was seen before this migration was told (the old consumer sent every event).
UPDATE appointment_versions SET told_version = version;

-- The dead letters of the last window, for the whole consumer group: the cap on dead
-- letters counts these rows, whichever worker wrote them.
CREATE TABLE dead_letter_window (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    kind      text        NOT NULL,
    source    text        NOT NULL
);
CREATE INDEX dead_letter_window_at ON dead_letter_window (at);
