"""Presence you can trust: the server writes who a connection is into the presence states it
sets, so nobody appears as someone else.

Editors show the `user` field of each awareness state (Tiptap's collaboration caret: name
and colour). For a signed-in connection the server sets `user.id` and `user.name` from the
session's principal, keeping what else the client put there (its colour); a state that is
not a JSON object names nobody and is left as it is. Anonymous connections (authentication
off) are not touched.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

__all__ = ["vouch_for"]


def vouch_for(owner: Hashable, state_json: str) -> str:
    principal = getattr(owner, "principal", None)
    if principal is None or not principal.id:
        return state_json
    try:
        state: Any = json.loads(state_json)
    except ValueError:  # validated by the table already; never reached
        return state_json
    if not isinstance(state, dict):
        return state_json
    user = state.get("user")
    user = dict(user) if isinstance(user, dict) else {}
    name = principal.name or principal.id
    if user.get("id") == principal.id and user.get("name") == name:
        return state_json  # already true: relayed byte for byte
    user["id"], user["name"] = principal.id, name
    state["user"] = user
    return json.dumps(state, ensure_ascii=False, separators=(",", ":"))
