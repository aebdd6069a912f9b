-- Run once by the postgres image, when it initialises an empty data directory
-- ($MEDBOOK_DATA_DIR/postgres): the three databases of medbook, owned by $POSTGRES_USER.
-- A data directory that already exists is left alone (this file is not run again); the
-- services' migrations (the *-migrate one-shots of docker-compose.yml) create the tables.
SELECT 'CREATE DATABASE medbook'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'medbook')\gexec
SELECT 'CREATE DATABASE medbook_notifications'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'medbook_notifications')\gexec
SELECT 'CREATE DATABASE medbook_audit'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'medbook_audit')\gexec
