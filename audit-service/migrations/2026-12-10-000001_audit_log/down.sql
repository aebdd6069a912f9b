DROP TABLE audit_checkpoints;
DROP TABLE audit_records;
DROP FUNCTION audit_refuse_change();
