-- Pages and the page tree of each space (server/domain/pages.py). A page's content is the
-- Yjs document "<space>/page/<id>"; this table holds what the tree and the trash need.
-- Times are seconds since the epoch, written by the server (the same on both backends).

CREATE TABLE pages (
    id           text PRIMARY KEY,
    space        text NOT NULL REFERENCES spaces (slug),
    -- '' for a page at the top of the space's tree; otherwise a page of the same space.
    parent       text NOT NULL DEFAULT '',
    -- A fractional key: siblings sort by it (byte order on both backends), and a page put
    -- between two others gets a key between theirs, so no sibling is ever renumbered.
    position     text {bytewise} NOT NULL,
    title        text NOT NULL,
    created_by   text NOT NULL DEFAULT '',
    created_at   double precision NOT NULL,
    updated_by   text NOT NULL DEFAULT '',
    updated_at   double precision NOT NULL,
    -- In the trash since (NULL: live). The pages deleted together (a page and the pages
    -- under it) share deleted_root, the page that was deleted, and are restored together.
    deleted_at   double precision,
    deleted_by   text NOT NULL DEFAULT '',
    deleted_root text NOT NULL DEFAULT ''
);

-- The tree of a space in one query, each sibling list in order; the next sibling of a page.
CREATE INDEX pages_tree ON pages (space, parent, position);
-- The trash of a space, what a restore brings back, and what the purge removes.
CREATE INDEX pages_trash ON pages (deleted_root) WHERE deleted_at IS NOT NULL;
CREATE INDEX pages_deleted_at ON pages (deleted_at) WHERE deleted_at IS NOT NULL;
