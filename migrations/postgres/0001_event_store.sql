-- The event store. Positions are assigned by the writer while it holds the chain
-- head row lock, so they are gapless and commit in order (see ARCHITECTURE.md).
CREATE TABLE events (
    position        BIGINT PRIMARY KEY,
    stream_id       TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    event_id        UUID    NOT NULL,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    -- Kept as text, not jsonb: the hash covers these exact bytes.
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    recorded_at_us  BIGINT  NOT NULL,
    prev_hash       BYTEA   NOT NULL,
    hash            BYTEA   NOT NULL,
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

CREATE TABLE chain_head (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    position BIGINT NOT NULL,
    hash     BYTEA  NOT NULL
);
INSERT INTO chain_head (id, position, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION medledger_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'medledger: % on % refused: the history is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE FUNCTION medledger_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.position < OLD.position THEN
        RAISE EXCEPTION 'medledger: the chain head only moves forward'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION medledger_refuse_rewrite();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION medledger_refuse_rewrite();
CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head
    FOR EACH ROW EXECUTE FUNCTION medledger_refuse_rewrite();
CREATE TRIGGER chain_head_forward_only BEFORE UPDATE ON chain_head
    FOR EACH ROW EXECUTE FUNCTION medledger_head_forward_only();

-- Personal-data keys live outside the events so that erasing one shreds the data
-- while the chain (which hashes ciphertext) still verifies.
CREATE TABLE subject_keys (
    subject        TEXT PRIMARY KEY,
    wrapped_key    BYTEA,
    created_at_us  BIGINT NOT NULL,
    erased_at_us   BIGINT
);

-- Saga checkpoints: unlike read models they record effects on the outside world
-- (mail sent), so they live with the history, not in the rebuildable read database.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);

CREATE TABLE id_sequences (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE idempotency_keys (
    scope          TEXT   NOT NULL,
    key            TEXT   NOT NULL,
    request_hash   TEXT   NOT NULL,
    status         BIGINT NOT NULL,
    content_type   TEXT   NOT NULL,
    body           TEXT   NOT NULL,
    created_at_us  BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

-- The application role: it may read and append, never rewrite. Deployments connect
-- as a login role that is a member of it, not as the table owner.
DO $$
BEGIN
    CREATE ROLE medledger_app NOLOGIN;
EXCEPTION WHEN OTHERS THEN NULL;
END $$;
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM PUBLIC;
GRANT SELECT, INSERT ON events TO medledger_app;
GRANT SELECT, UPDATE ON chain_head TO medledger_app;
GRANT SELECT, INSERT, UPDATE ON subject_keys, id_sequences, idempotency_keys TO medledger_app;
