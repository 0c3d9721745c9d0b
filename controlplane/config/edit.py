"""Changing one value of a routing file in place: comments, order and formatting untouched.

The loader knows the line of every value, so a flip rewrites the value on that line only, checks
that the result still validates and says what was asked, and replaces the file atomically (a
router never reads half a file).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from controlplane.config.issues import ConfigError, ConfigIssue
from controlplane.config.load import read_document
from controlplane.config.model import Backend, RoutingConfig
from controlplane.config.validate import load_config_text


def set_backend(path: str | Path, slug: str, backend: Backend) -> RoutingConfig:
    """Set `tenants.<slug>.backend`; returns the new config. Raises ConfigError, leaving the file as it was."""
    path = Path(path)
    doc, raw = read_document(path)
    source = str(path)
    tenants = doc.data.get("tenants") if isinstance(doc.data, dict) else None
    if not isinstance(tenants, dict) or slug not in tenants or not isinstance(tenants[slug], dict) \
            or "backend" not in tenants[slug]:
        raise ConfigError((ConfigIssue(source, 0, f"tenants.{slug}.backend", "no such tenant entry to change"),))
    line_no = doc.lines[("tenants", slug, "backend")]
    current = str(tenants[slug]["backend"])
    lines = raw.decode().splitlines(keepends=True)
    line = lines[line_no - 1]
    # `backend: v1` (block style) or `{backend: v1, ...}` (flow style), optionally quoted
    pattern = re.compile(r"(\bbackend\s*:\s*)([\"']?)" + re.escape(current) + r"\2(?![\w-])")
    changed, count = pattern.subn(lambda m: f"{m.group(1)}{m.group(2)}{backend}{m.group(2)}", line, count=1)
    if count != 1:
        raise ConfigError((ConfigIssue(source, line_no, f"tenants.{slug}.backend",
                                       "could not find the value on its line to change it"),))
    lines[line_no - 1] = changed
    text = "".join(lines)
    config = load_config_text(text, source)
    if config.tenants[slug].backend != backend:
        raise ConfigError((ConfigIssue(source, line_no, f"tenants.{slug}.backend", "the edit did not take"),))
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return config
