-- Threads (server/domain/threads.py): a page's discussion or a space discussion with a
-- title. The messages live in the thread's Yjs document `<space>/thread/<id>`, not here;
-- this row says that the document exists, where it belongs and who started it.

CREATE TABLE threads (
    id         text PRIMARY KEY,
    space      text NOT NULL REFERENCES spaces (slug),
    -- The page discussed (its id); NULL: a discussion of the space itself.
    page       text,
    title      text NOT NULL DEFAULT '',
    created_by text NOT NULL,
    created_at double precision NOT NULL
);

-- A space's threads, newest first; a page's discussion.
CREATE INDEX threads_space ON threads (space, created_at);
CREATE INDEX threads_page ON threads (page);
