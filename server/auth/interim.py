"""TEMPORARY authorizer, until the spaces-and-permissions Authorizer lands: any signed-in
person may write every document (a read-scope token: read), anonymous may do nothing.
app.py uses it when SAMEN_AUTH=required; replace it there, then delete this module."""

from __future__ import annotations

from .ports import Grant, Principal

__all__ = ["SignedInMayWrite"]


class SignedInMayWrite:
    async def authorize(self, principal: Principal, document: str) -> Grant:
        if principal.anonymous:
            return Grant.NONE
        return Grant.READ if principal.scope == "read" else Grant.WRITE
