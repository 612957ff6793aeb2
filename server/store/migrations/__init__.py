"""The schema of every store backend, once: numbered SQL files `NNNN_what.sql`, applied in
order, each exactly once, in the transaction that records it. A file, once released, is
never edited: change the schema with a new file.

The files are written in the SQL that SQLite and PostgreSQL share. Where the two differ, a
file says so with a placeholder that `Migration.render` replaces for the backend:

    {serial_pk}  the log's sequence: never reused, even after the newest rows were deleted
    {bigint}     a 64-bit integer
    {blob}       bytes
    {at}         when a row was last written (PostgreSQL fills it in; SQLite is given it)
    {bytewise}   a text column's collation that orders by code point, as Python does

Anything else in braces is refused, so a typo cannot reach a database. Each backend keeps
its own record of what it applied (SQLite: `schema_version`, a number; PostgreSQL:
`samen_schema_migrations`, one row per version) and calls `pending` for what is missing.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

from ...errors import StoreError

__all__ = ["POSTGRES", "SQLITE", "Dialect", "Migration", "available_migrations", "pending"]

_FILE_NAME = re.compile(r"^(\d{4})_\w+\.sql$")
_PLACEHOLDER = re.compile(r"\{(\w*)\}")


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    types: Mapping[str, str]


SQLITE = Dialect(
    "sqlite",
    {
        # AUTOINCREMENT: sqlite_sequence remembers the highest seq, so none is reused.
        "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bigint": "INTEGER",
        "blob": "BLOB",
        "at": "REAL NOT NULL",  # seconds since the epoch, written by the store
        "bytewise": "COLLATE BINARY",
    },
)
POSTGRES = Dialect(
    "postgres",
    {
        "serial_pk": "bigserial PRIMARY KEY",
        "bigint": "bigint",
        "blob": "bytea",
        "at": "timestamptz NOT NULL DEFAULT now()",
        "bytewise": 'COLLATE "C"',
    },
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    template: str

    def render(self, dialect: Dialect) -> str:
        def replace(match: re.Match[str]) -> str:
            try:
                return dialect.types[match[1]]
            except KeyError:
                raise StoreError(f"migration {self.name}: unknown placeholder {match[0]}") from None

        return _PLACEHOLDER.sub(replace, self.template)

    def statements(self, dialect: Dialect) -> list[str]:
        """The rendered file as single statements (SQLite's `execute` takes one at a time,
        and `executescript` would commit the transaction the upgrade runs in)."""
        statements: list[str] = []
        pending = ""
        for line in self.render(dialect).splitlines(keepends=True):
            pending += line
            if sqlite3.complete_statement(pending):
                statements.append(pending.strip())
                pending = ""
        if _without_comments(pending).strip():
            raise StoreError(f"migration {self.name}: the last statement lacks its ';'")
        return statements


def _without_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def available_migrations() -> list[Migration]:
    """The SQL files shipped in this package, by version."""
    found: dict[int, Migration] = {}
    for entry in resources.files(__name__).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match[1])
        if version in found:
            raise StoreError(f"two migrations claim version {version}: {found[version].name}, {entry.name}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    if not found:
        # Applying nothing would "succeed" and leave a database without tables.
        raise StoreError(f"no migration files in {__name__}: installed without its .sql files?")
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"migration versions must run 1, 2, 3, ... without gaps: {versions}")
    return [found[version] for version in versions]


def pending(migrations: list[Migration], applied: Iterable[int]) -> list[Migration]:
    """The migrations not yet applied, in order. Raises `StoreError` if the database has
    versions this code does not know: a newer release may have a shape this one corrupts."""
    done = set(applied)
    newest_known = migrations[-1].version
    unknown = sorted(version for version in done if version > newest_known)
    if unknown:
        raise StoreError(
            f"the database schema is newer than this server: it has migrations {unknown} and this "
            f"server knows up to {newest_known}; upgrade the server"
        )
    return [migration for migration in migrations if migration.version not in done]
