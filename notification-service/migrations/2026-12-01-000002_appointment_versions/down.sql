DROP TABLE appointment_versions;
