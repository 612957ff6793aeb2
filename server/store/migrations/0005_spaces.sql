-- Spaces, their members, join requests and invitations (server/domain/spaces.py).
-- Times are seconds since the epoch, written by the server (the same on both backends).
-- Spaces are archived, never deleted, so rows that name a space always find it.

CREATE TABLE spaces (
    slug         text PRIMARY KEY,
    title        text NOT NULL,
    description  text NOT NULL DEFAULT '',
    join_policy  text NOT NULL CHECK (join_policy IN ('open', 'request', 'invite')),
    visibility   text NOT NULL CHECK (visibility IN ('listed', 'secret')),
    -- The site that decides the membership; '' = this site. Federated membership comes later.
    home         text NOT NULL DEFAULT '',
    archived     integer NOT NULL DEFAULT 0,
    default_role text NOT NULL DEFAULT 'editor'
                 CHECK (default_role IN ('viewer', 'editor', 'moderator', 'admin')),
    created_by   text NOT NULL DEFAULT '',
    created_at   double precision NOT NULL
);

CREATE TABLE space_members (
    space    text NOT NULL REFERENCES spaces (slug),
    person   text NOT NULL,
    role     text NOT NULL CHECK (role IN ('viewer', 'editor', 'moderator', 'admin')),
    added_by text NOT NULL DEFAULT '',
    added_at double precision NOT NULL,
    PRIMARY KEY (space, person)
);

-- "Which spaces is this person in" (the space list, a person's removal everywhere).
CREATE INDEX space_members_person ON space_members (person);

-- Every membership change in order: who got which role ('' = removed), decided by whom.
-- The home site will replicate this log (signed) to the sites a space is shared with.
CREATE TABLE space_member_log (
    seq    {serial_pk},
    space  text NOT NULL,
    person text NOT NULL,
    role   text NOT NULL,
    actor  text NOT NULL,
    at     double precision NOT NULL
);

CREATE INDEX space_member_log_space ON space_member_log (space, seq);

-- A request stays after its decision: the requester is told from it (and a later
-- notifications step shows it).
CREATE TABLE space_join_requests (
    id         text PRIMARY KEY,
    space      text NOT NULL REFERENCES spaces (slug),
    person     text NOT NULL,
    status     text NOT NULL CHECK (status IN ('pending', 'approved', 'declined')),
    message    text NOT NULL DEFAULT '',
    created_at double precision NOT NULL,
    decided_by text NOT NULL DEFAULT '',
    decided_at double precision NOT NULL DEFAULT 0
);

-- At most one pending request per person and space.
CREATE UNIQUE INDEX space_join_requests_pending ON space_join_requests (space, person)
    WHERE status = 'pending';
CREATE INDEX space_join_requests_person ON space_join_requests (person);

CREATE TABLE space_invitations (
    id         text PRIMARY KEY,
    space      text NOT NULL REFERENCES spaces (slug),
    person     text NOT NULL,
    role       text NOT NULL CHECK (role IN ('viewer', 'editor', 'moderator', 'admin')),
    status     text NOT NULL CHECK (status IN ('pending', 'accepted', 'declined', 'withdrawn')),
    invited_by text NOT NULL,
    created_at double precision NOT NULL,
    decided_at double precision NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX space_invitations_pending ON space_invitations (space, person)
    WHERE status = 'pending';
CREATE INDEX space_invitations_person ON space_invitations (person);
