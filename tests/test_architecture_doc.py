"""docs/architecture.md stays true: every file and module it names exists, and every room is on it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
PATH = re.compile(r"\b(?:sr3_desktop|exporter|tests|docs|scripts|resources)/[\w/.]*\w/?")
ROOM = re.compile(r"\b(?:sr3_desktop/core|exporter)/\w+/")
NAMES = re.compile(r"^[\s,\w]+$")


def picture() -> list[str]:
    return DOC.split("```\n")[1].splitlines()


def test_every_path_the_map_names_exists() -> None:
    """Mutation caught: a module or folder moved or renamed (say core/upscale/bands.py) with the map
    left as it was."""
    named = set(PATH.findall(DOC))
    assert len(named) > 20  # the map names files, not only rooms
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []


def test_the_modules_listed_under_each_room_exist() -> None:
    """The bare names in the picture (``flow, pipeline, ...`` after a room; a line of names alone goes
    on with the last room of the line above) and the ``name.py`` in each room's bullet. Mutation
    caught: a module of a room deleted or renamed while the map still lists it."""
    listed: list[tuple[str, str]] = []
    last_room = ""
    for line in picture():
        rooms_here = ROOM.findall(line)
        for segment in line.split("|"):
            room = ROOM.findall(segment)
            after = ROOM.split(segment)[-1] if room else segment
            if room or (NAMES.match(segment) and "," in segment):
                words = re.findall(r"\b[a-z_0-9]+\b", after.split("(")[0])
                listed += [(room[-1] if room else last_room, w) for w in words if not room or after.strip()]
        last_room = rooms_here[-1] if rooms_here else last_room
    for bullet in re.findall(r"^\* \*\*`([\w/]+/)`\*\*(.*?)(?=^\* |^## |\Z)", DOC, re.M | re.S):
        listed += [(bullet[0], name) for name in re.findall(r"`(\w+)\.py`", bullet[1])]
    assert len(listed) > 30
    missing = [f"{room}{name}.py" for room, name in listed if not (ROOT / room / f"{name}.py").is_file()]
    assert missing == []


def test_every_room_of_the_core_and_the_exporter_is_on_the_map() -> None:
    """Mutation caught: a new sub-package added without its place on the map."""
    rooms = [p for parent in ("sr3_desktop/core", "exporter") for p in sorted((ROOT / parent).iterdir())
             if (p / "__init__.py").is_file()]
    assert len(rooms) >= 7
    assert [str(r.relative_to(ROOT)) for r in rooms if f"{r.relative_to(ROOT)}/" not in DOC] == []
