"""Notifications of rollout actions to a Slack-compatible incoming webhook (`{"text": ...}`).

A notification that cannot be delivered is logged and reported, never raised: a rollback must not
wait for, or fail because of, a chat service.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

log = logging.getLogger(__name__)


def notify(url: str | None, text: str, timeout_s: float = 5.0) -> bool:
    if not url:
        return False
    request = urllib.request.Request(url, data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError) as exc:
        log.warning("notification not delivered (%s): %s", type(exc).__name__, text)
        return False
