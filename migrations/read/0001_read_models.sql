-- Read models. Portable SQL (PostgreSQL and SQLite): every table here is rebuilt from
-- the history by `medledger replay`, so nothing in it is the source of truth.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);

CREATE TABLE users (
    id              BIGINT PRIMARY KEY,
    email           TEXT    NOT NULL,
    username        TEXT,
    first_name      TEXT    NOT NULL,
    last_name       TEXT    NOT NULL,
    clinic_name     TEXT    NOT NULL,
    roles           TEXT    NOT NULL,
    primary_role    TEXT    NOT NULL,
    is_active       BIGINT  NOT NULL,
    date_joined     TEXT    NOT NULL,
    last_login      TEXT,
    erased          BIGINT  NOT NULL
);
CREATE INDEX users_email_idx ON users (email);
CREATE INDEX users_username_idx ON users (username);

CREATE TABLE audit_log (
    id             BIGINT PRIMARY KEY,
    user_id        BIGINT,
    action         TEXT   NOT NULL,
    resource_type  TEXT   NOT NULL,
    resource_id    TEXT   NOT NULL,
    timestamp      TEXT   NOT NULL,
    ip_address     TEXT,
    user_agent     TEXT,
    details        TEXT   NOT NULL
);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
CREATE INDEX audit_log_timestamp_idx ON audit_log (timestamp);
