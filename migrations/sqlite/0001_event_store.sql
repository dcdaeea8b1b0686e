-- The event store (SQLite). Writers take the database write lock with BEGIN IMMEDIATE,
-- so positions are gapless and commit in order, across processes too.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY,
    stream_id       TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    event_id        TEXT    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    recorded_at_us  INTEGER NOT NULL,
    prev_hash       BLOB    NOT NULL,
    hash            BLOB    NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE TABLE chain_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL,
    hash     BLOB    NOT NULL
);
INSERT INTO chain_head (id, position, hash) VALUES (1, 0, zeroblob(32));

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'medledger: UPDATE on events refused: the history is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'medledger: DELETE on events refused: the history is append-only'); END;
CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head
BEGIN SELECT RAISE(ABORT, 'medledger: DELETE on chain_head refused'); END;
CREATE TRIGGER chain_head_forward_only BEFORE UPDATE ON chain_head WHEN NEW.position < OLD.position
BEGIN SELECT RAISE(ABORT, 'medledger: the chain head only moves forward'); END;

CREATE TABLE subject_keys (
    subject        TEXT PRIMARY KEY,
    wrapped_key    BLOB,
    created_at_us  INTEGER NOT NULL,
    erased_at_us   INTEGER
);

-- Saga checkpoints: unlike read models they record effects on the outside world
-- (mail sent), so they live with the history, not in the rebuildable read database.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);

CREATE TABLE id_sequences (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

CREATE TABLE idempotency_keys (
    scope          TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    request_hash   TEXT    NOT NULL,
    status         INTEGER NOT NULL,
    content_type   TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    created_at_us  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
