-- People and their credentials, the revocation feed and the audit log (server/domain/).
-- Times are seconds since the epoch (double precision: REAL affinity on SQLite), written by
-- the server; flags are integers. See server/db.py.

-- Accounts of this site. The person's id is "name@site" with the node's site id: the name
-- is the key here. `password_hash`: an argon2id hash, or '' for people who sign in only
-- through the identity provider. `oidc_subject`: "issuer sub" of the linked IdP account.
-- `idp_groups`: the IdP groups of the last OpenID Connect sign-in (a JSON list).
CREATE TABLE people (
    name          text PRIMARY KEY,
    email         text NOT NULL DEFAULT '',
    display_name  text NOT NULL DEFAULT '',
    site_role     text NOT NULL,
    password_hash text NOT NULL DEFAULT '',
    oidc_subject  text UNIQUE,
    idp_groups    text NOT NULL DEFAULT '[]',
    suspended_at  double precision,
    created_at    double precision NOT NULL
);

-- Browser sessions: the cookie holds a random secret, the table only its SHA-256.
CREATE TABLE web_sessions (
    secret_hash  text PRIMARY KEY,
    person       text NOT NULL REFERENCES people (name),
    address      text NOT NULL DEFAULT '',
    created_at   double precision NOT NULL,
    last_seen_at double precision NOT NULL,
    expires_at   double precision NOT NULL
);
CREATE INDEX web_sessions_person ON web_sessions (person);

-- Personal API tokens "samen_<id>_<secret>": the id is public (lists, revocation), the
-- table keeps only the SHA-256 of the secret.
CREATE TABLE api_tokens (
    id           text PRIMARY KEY,
    person       text NOT NULL REFERENCES people (name),
    label        text NOT NULL DEFAULT '',
    secret_hash  text NOT NULL,
    scope        text NOT NULL,
    created_at   double precision NOT NULL,
    expires_at   double precision,
    revoked_at   double precision,
    last_used_at double precision
);
CREATE INDEX api_tokens_person ON api_tokens (person);

-- Sign-ins through the identity provider that were started and not finished yet.
CREATE TABLE oidc_logins (
    state_hash text PRIMARY KEY,
    verifier   text NOT NULL,
    nonce      text NOT NULL,
    return_to  text NOT NULL,
    expires_at double precision NOT NULL
);

-- IdP group -> role in a space (server/domain/people.py, `group_space_roles`).
CREATE TABLE idp_group_roles (
    idp_group text NOT NULL,
    space     text NOT NULL,
    role      text NOT NULL,
    PRIMARY KEY (idp_group, space)
);

-- Changes of access that running nodes must apply to their live sessions (a suspension, a
-- revoked token, a member removed...), written by whoever made the change, a node or the
-- CLI; every node reads the rows after the last it saw (server/domain/revocations.py).
-- `node`: the node that wrote the row and already told its site over the backplane; '' for
-- the CLI.
CREATE TABLE revocations (
    seq       {serial_pk},
    principal text NOT NULL DEFAULT '',
    token     text NOT NULL DEFAULT '',
    prefix    text NOT NULL DEFAULT '',
    node      text NOT NULL DEFAULT '',
    at        double precision NOT NULL
);

-- Who did what, when, from which address and site (server/domain/audit.py).
CREATE TABLE audit_log (
    seq     {serial_pk},
    at      double precision NOT NULL,
    site    text NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text NOT NULL DEFAULT '',
    address text NOT NULL DEFAULT '',
    detail  text NOT NULL DEFAULT ''  -- a JSON object, or '' for none
);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_target ON audit_log (target, seq);
