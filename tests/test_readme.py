"""The README is the user's manual: every setting must be documented there, with its default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from server.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    rows = dict(re.findall(r"^\| `(SAMEN_\w+)` \| `--[\w-]+` \| ([^|]+) \|", README, re.MULTILINE))
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        name = f"SAMEN_{field.name.upper()}"
        assert name in rows, f"{name} is not documented in README.md"
        value = getattr(defaults, field.name)
        shown = rows[name].strip().strip("`")
        if value in ("", None):
            assert shown == "(empty)", name
        elif isinstance(value, bool):
            assert shown == str(value).lower(), name
        elif isinstance(value, Path):
            assert Path(shown) == value, name
        else:
            assert shown == str(value), name
    assert set(rows) == {f"SAMEN_{f.name.upper()}" for f in dataclasses.fields(Settings)}
