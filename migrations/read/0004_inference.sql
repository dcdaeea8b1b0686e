-- Inference tasks and models (contract 004).
CREATE TABLE inference_models (
    id          BIGINT PRIMARY KEY,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    builtin     BIGINT  NOT NULL,
    manifest    TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);

CREATE TABLE inference_tasks (
    id                       BIGINT PRIMARY KEY,
    owner_id                 BIGINT NOT NULL,
    status                   TEXT   NOT NULL,
    detection_model_id       BIGINT NOT NULL,
    classification_model_id  BIGINT NOT NULL,
    input_path               TEXT   NOT NULL,
    result                   TEXT,
    failure_reason           TEXT,
    attempts                 BIGINT NOT NULL,
    created_at               TEXT   NOT NULL,
    updated_at               TEXT   NOT NULL
);
CREATE INDEX inference_tasks_owner_idx ON inference_tasks (owner_id, id);
CREATE INDEX inference_tasks_status_idx ON inference_tasks (status, id);
