ALTER TABLE audit_records DROP COLUMN received_at;
