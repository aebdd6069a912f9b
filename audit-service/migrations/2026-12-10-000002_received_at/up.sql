-- The audit-service's own receive time of each record (its clock at Append), beside the
-- writer's occurred_at. It is part of the record's canonical bytes, so the leaf hash,
-- the signed checkpoints and `audit-service verify` cover it.
--
-- NULL only for the records appended before this column existed: their leaves were
-- hashed without it (the version-1 encoding), and the append-only triggers forbid
-- filling it in afterwards. Every record appended from now on has it.
ALTER TABLE audit_records ADD COLUMN received_at TIMESTAMPTZ;
