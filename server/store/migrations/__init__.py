"""The schema of the PostgreSQL store as numbered SQL files, `NNNN_what.sql`, applied in
order by `server.store.migrate`. A file, once released, is never edited: change the schema
with a new file."""
