-- The catalog (contract 000) as a table: list and detail, filters.
CREATE TABLE datasets (
    id           BIGINT PRIMARY KEY,
    slug         TEXT   NOT NULL,
    title        TEXT   NOT NULL,
    description  TEXT   NOT NULL,
    source_url   TEXT   NOT NULL,
    modality     TEXT   NOT NULL,
    area         TEXT   NOT NULL,
    task_types   TEXT   NOT NULL,
    num_images   BIGINT,
    size_mb      BIGINT,
    license      TEXT   NOT NULL,
    tags         TEXT   NOT NULL,
    year         BIGINT,
    retired      BIGINT NOT NULL,
    created_at   TEXT   NOT NULL,
    updated_at   TEXT   NOT NULL
);
CREATE INDEX datasets_area_idx ON datasets (area);
