"""The people-and-credentials services of one node (or of one CLI run), built from settings:
what app.py wires in and the CLI acts with. `build_auth` does no I/O; `open`/`close` the
database around use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.backplane import Revocation

from ..db import Database, open_database
from ..domain.accounts import Accounts
from ..domain.audit import AuditLog
from ..domain.people import People
from ..domain.revocations import Revocations
from ..domain.tokens import ApiTokens
from ..domain.web_sessions import WebSessions
from ..errors import StoreError
from ..settings import Settings
from .authenticator import SamenAuthenticator
from .oidc import OidcClient, OidcConfig
from .origins import OriginPolicy
from .passwords import Passwords
from .ratelimit import SignInLimiter

__all__ = ["AuthServices", "build_auth"]

log = logging.getLogger(__name__)

PRUNE_SECONDS = 600.0


@dataclass(slots=True)
class AuthServices:
    settings: Settings
    db: Database
    people: People
    tokens: ApiTokens
    sessions: WebSessions
    audit: AuditLog
    revocations: Revocations
    accounts: Accounts
    origins: OriginPolicy
    authenticator: SamenAuthenticator
    oidc: OidcClient | None

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def run(self, apply: Callable[[Revocation], Any]) -> None:
        """The node's background work (owned by the lifespan): the revocation feed, handing
        other writers' revocations to `apply`, and deleting expired browser sessions."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.revocations.run(apply), name="revocation-feed")
            tasks.create_task(self._prune_sessions(), name="web-session-pruning")

    async def _prune_sessions(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_SECONDS)
            try:
                await self.sessions.prune()
            except StoreError as exc:
                log.warning("pruning expired browser sessions failed: %s", exc)

    async def hint_first_admin(self) -> None:
        """Say how to create the first admin, while there is none (authentication on)."""
        if self.settings.auth_required and await self.people.count_admins() == 0:
            log.warning(
                "authentication is required and there is no site admin yet: create one with "
                "`samen user add admin --site-role admin --password-stdin` (same SAMEN_DATA_DIR or "
                "SAMEN_DATABASE_URL), then `samen token create admin` for a token; "
                "or run with SAMEN_AUTH=off for open development"
            )


def build_auth(
    settings: Settings,
    *,
    node: str = "",
    on_revoke: Callable[[Revocation], Any] | None = None,
    db: Database | None = None,
    passwords: Passwords | None = None,
) -> AuthServices:
    """`node`: this node's id ("" for the CLI); `on_revoke`: applies a revocation on this
    node at once (the session registry's `revoke`)."""
    db = db if db is not None else open_database(settings)
    people = People(db, settings.site, passwords or Passwords())
    tokens = ApiTokens(db)
    sessions = WebSessions(db, idle=settings.session_idle_timeout, absolute=settings.session_max_age)
    audit = AuditLog(db, settings.site)
    revocations = Revocations(db, node, on_revoke)
    limiter = SignInLimiter(settings.signin_max_failures, settings.signin_window)
    accounts = Accounts(db, people, tokens, sessions, audit, revocations, limiter)
    origins = OriginPolicy(settings.origins, settings.public_url)
    oidc = None
    if settings.oidc_issuer:
        config = OidcConfig(
            settings.oidc_issuer,
            settings.oidc_client_id,
            settings.oidc_client_secret,
            settings.oidc_scopes,
            settings.oidc_groups_claim,
        )
        oidc = OidcClient(config, db)
    authenticator = SamenAuthenticator(people, tokens, sessions, origins)
    return AuthServices(
        settings, db, people, tokens, sessions, audit, revocations, accounts, origins, authenticator, oidc
    )
