-- The update log and the snapshots (server/store/ports.py). Unqualified names: on PostgreSQL
-- the tables go to the first schema of the connection's search_path.
-- IF NOT EXISTS: SQLite's first release created these before recording its version, in
-- separate transactions, so a file may hold some of them and no version.

CREATE TABLE IF NOT EXISTS updates (
    seq  {serial_pk},
    doc  text NOT NULL,
    data {blob} NOT NULL,
    at   {at}
);

-- `load` and `compact` read one document's rows in seq order.
CREATE INDEX IF NOT EXISTS updates_doc_seq ON updates (doc, seq);

CREATE TABLE IF NOT EXISTS snapshots (
    doc         text PRIMARY KEY,
    data        {blob} NOT NULL,
    through_seq {bigint} NOT NULL,
    at          {at}
);
