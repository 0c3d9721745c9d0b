"""Reading what `nginx -T` prints: each file it read, headed "# configuration file PATH:", then the
file's text. Pure."""

from __future__ import annotations

from typing import Final

FILE_HEAD: Final = "# configuration file "


def files_read(dump: str) -> dict[str, list[str]]:
    """Each file the dump holds, in the order nginx read them (the main config first): its lines."""
    files: dict[str, list[str]] = {}
    lines: list[str] = []  # what comes before the first head (nginx's own messages) is no file's
    for line in dump.splitlines():
        if line.startswith(FILE_HEAD) and line.endswith(":"):
            lines = files.setdefault(line[len(FILE_HEAD):-1], [])
        else:
            lines.append(line)
    return files
