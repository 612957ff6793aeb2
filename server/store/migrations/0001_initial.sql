-- The update log and the snapshots of the PostgreSQL document store (server/store/postgres.py).
-- Unqualified names: the tables go to the first schema of the connection's search_path.

CREATE TABLE updates (
    seq  bigserial   PRIMARY KEY,
    doc  text        NOT NULL,
    data bytea       NOT NULL,
    at   timestamptz NOT NULL DEFAULT now()
);

-- `load` and `compact` read one document's rows in seq order.
CREATE INDEX updates_doc_seq ON updates (doc, seq);

CREATE TABLE snapshots (
    doc         text        PRIMARY KEY,
    data        bytea       NOT NULL,
    through_seq bigint      NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
