-- Federated spaces (server/domain/space_federation.py): a space's home site decides its
-- membership and roles and sends them, signed, to the sites the space is shared with.
-- This replaces the `[spaces]` table of the peers file (still read for one release, with a
-- deprecation warning: see server/federation/peers.py).

-- The sites a space is shared with, besides its home. At the home site the operator writes
-- them (`samen space share`); at the others they come with the home's signed membership.
CREATE TABLE space_sites (
    space text NOT NULL REFERENCES spaces (slug),
    site  text NOT NULL,
    PRIMARY KEY (space, site)
);

-- Every change of a space's settings, members or sites raises its version (at the home
-- site); a copy keeps the version of the home's membership it last applied, and applies
-- only a newer one: an old signed membership sent again changes nothing.
ALTER TABLE spaces ADD COLUMN version integer NOT NULL DEFAULT 0;
