-- Dataset items and user collections (contract 000).
CREATE TABLE dataset_items (
    id            BIGINT PRIMARY KEY,
    dataset_id    BIGINT NOT NULL,
    filename      TEXT   NOT NULL,
    content_type  TEXT   NOT NULL,
    size_bytes    BIGINT NOT NULL,
    sha256        TEXT   NOT NULL,
    labels        TEXT   NOT NULL,
    caption       TEXT   NOT NULL,
    identifiers   TEXT   NOT NULL,
    created_at    TEXT   NOT NULL
);
CREATE INDEX dataset_items_dataset_idx ON dataset_items (dataset_id, id);

CREATE TABLE collections (
    id                 BIGINT PRIMARY KEY,
    owner_id           BIGINT NOT NULL,
    query_text         TEXT   NOT NULL,
    dataset_ids        TEXT   NOT NULL,
    limit_per_dataset  BIGINT NOT NULL,
    status             TEXT   NOT NULL,
    failure_reason     TEXT,
    archive_key        TEXT,
    archive_size       BIGINT,
    items              BIGINT,
    created_at         TEXT   NOT NULL,
    updated_at         TEXT   NOT NULL,
    expires_at         TEXT
);
CREATE INDEX collections_owner_idx ON collections (owner_id, id);
CREATE INDEX collections_status_idx ON collections (status, expires_at);
