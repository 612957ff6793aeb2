"""The peers file: who our peer sites are, and which spaces we share with each.

    # peers.toml
    [[peer]]
    id = "lyon"
    urls = ["wss://samen.lyon.example/federation"]   # tried in turn; ws:// only if allowed
    public_key = "base64 of 32 bytes, from `samen site init` at that site"

    [spaces]                         # DEPRECATED: read for one release, with a warning
    engineering = ["lyon", "oslo"]   # space -> the peer sites it is federated with

A document's space is the prefix of its name up to the first "/" (`engineering/roadmap` is
in `engineering`); `ReplicationScope` is the one place that decides what may cross a link.

Which spaces are shared with whom is now kept in the store: a space's home site shares it
(`samen space share SLUG SITE`, table `space_sites`, migration 0007) and tells the other
sites, signed, with its membership (server/federation/membership.py keeps the scope
current). The peers file's `[spaces]` table is still read for one release and added to
that scope, with a deprecation warning: such spaces have no home, so their membership is
not federated and an update from a peer is checked only for its author's site.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .identity import PublicKey, check_site_id
from .link_tls import insecure_refusal

__all__ = ["Peer", "PeersConfig", "ReplicationScope", "load_peers"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Peer:
    site_id: str
    urls: tuple[str, ...]
    public_key: PublicKey


class ReplicationScope:
    """Which documents may travel between this site and a peer: space -> peer sites. Read on
    every batch entry, so it is a dict in memory; `set_federated` replaces the spaces the
    store shares (the peers file's deprecated `[spaces]` stay as given)."""

    __slots__ = ("legacy", "spaces")

    def __init__(self, spaces: Mapping[str, frozenset[str]] | None = None) -> None:
        self.legacy: dict[str, frozenset[str]] = dict(spaces or {})
        self.spaces: dict[str, frozenset[str]] = dict(self.legacy)

    def set_federated(self, federated: Mapping[str, frozenset[str]]) -> None:
        merged = dict(self.legacy)
        for space, peers in federated.items():
            merged[space] = merged.get(space, frozenset()) | peers
        self.spaces = merged  # one assignment: readers see the old or the new table

    @staticmethod
    def space_of(document: str) -> str | None:
        space, sep, _ = document.partition("/")
        return space if sep and space else None

    def shares(self, document: str, peer: str) -> bool:
        space = self.space_of(document)
        return space is not None and peer in self.spaces.get(space, frozenset())

    def spaces_shared_with(self, peer: str) -> frozenset[str]:
        return frozenset(space for space, peers in self.spaces.items() if peer in peers)

    def peers_of(self, document: str) -> frozenset[str]:
        space = self.space_of(document)
        return self.spaces.get(space, frozenset()) if space is not None else frozenset()


@dataclass(frozen=True, slots=True)
class PeersConfig:
    peers: dict[str, Peer]
    scope: ReplicationScope


def load_peers(path: Path, own_site: str, *, allow_insecure: str = "false") -> PeersConfig:
    """The peers file; a `ws://` url is refused unless `allow_insecure` (the setting
    SAMEN_LINK_ALLOW_INSECURE: false, loopback or true) allows it."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the peers file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    peers: dict[str, Peer] = {}
    for entry in data.get("peer", []):
        try:
            site_id = check_site_id(str(entry["id"]))
            urls = entry.get("urls") or [entry["url"]]
            public_key = PublicKey.from_text(str(entry["public_key"]))
        except KeyError as exc:
            raise ConfigError(f"{path}: a [[peer]] entry lacks {exc.args[0]!r}") from None
        if site_id == own_site:
            raise ConfigError(f"{path}: peer {site_id!r} is this site itself")
        if site_id in peers:
            raise ConfigError(f"{path}: peer {site_id!r} is listed twice")
        if not all(isinstance(u, str) and u.startswith(("ws://", "wss://")) for u in urls):
            raise ConfigError(f"{path}: peer {site_id!r} needs wss:// (or ws://) urls")
        for url in urls:
            refusal = insecure_refusal(url, allow_insecure)
            if refusal is not None:
                raise ConfigError(f"{path}: peer {site_id!r}: {refusal}")
        peers[site_id] = Peer(site_id, tuple(urls), public_key)
    spaces: dict[str, frozenset[str]] = {}
    for space, sites in data.get("spaces", {}).items():
        if "/" in space or not space:
            raise ConfigError(f"{path}: space name {space!r} may not be empty or contain '/'")
        unknown = set(sites) - set(peers)
        if unknown:
            raise ConfigError(f"{path}: space {space!r} names unknown peers {sorted(unknown)}")
        spaces[space] = frozenset(sites)
    if spaces:
        log.warning(
            "%s: the [spaces] table is deprecated and read for one more release; share each space "
            "from its home site instead (`samen space share SLUG SITE`)",
            path,
        )
    return PeersConfig(peers, ReplicationScope(spaces))
