"""URL templates with named placeholders (`https://{slug}.{base_domain}/thank-you?order_id={order_id}`).

A template is checked once, where it enters (v2's start-up options, `dualstack tenant add/set`):
every placeholder must be one the URL's user fills in, with no conversion, format spec, attribute
or index, and the filled-in result must be an absolute http(s) URL. A checked template always
renders, so no request can fail on one. Pure: shared by the control plane and v2.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit

# What each kind of URL may contain.
NOTIFICATION_PLACEHOLDERS: Final = ("slug", "base_domain")
FINISH_PLACEHOLDERS: Final = ("slug", "base_domain", "order_id")
DEFAULT_NOTIFICATION_URL_TEMPLATE: Final = "https://{slug}.{base_domain}/webhooks/midtrans"
# The tenant's own thank-you page, which reads the order's status once.
DEFAULT_FINISH_URL_TEMPLATE: Final = "https://{slug}.{base_domain}/thank-you?order_id={order_id}"
_SAMPLE: Final = {"slug": "shop", "base_domain": "example.com", "order_id": "ORDER-1"}


class TemplateError(ValueError):
    """A template that cannot be used; the message names the problem and the valid placeholders."""


def _placeholders_text(allowed: tuple[str, ...]) -> str:
    return ", ".join("{" + name + "}" for name in allowed)


@dataclass(frozen=True, slots=True)
class UrlTemplate:
    text: str
    placeholders: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, placeholders: tuple[str, ...], *, what: str = "URL template") -> UrlTemplate:
        """The checked template, or TemplateError saying every problem and what is valid."""
        valid = f"valid placeholders: {_placeholders_text(placeholders)} (a literal brace is written {{{{ or }}}})"
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise TemplateError(f"{what} {text!r} cannot be read ({exc}); {valid}") from None
        problems = []
        for _, name, spec, conversion in fields:
            if name is None:
                continue
            if name not in placeholders:
                problems.append("{" + name + "} is not a placeholder" if name else "{} has no name")
            elif spec or conversion:
                problems.append("{" + name + "} takes no format spec or conversion")
        if problems:
            raise TemplateError(f"{what} {text!r}: {'; '.join(problems)}; {valid}")
        template = cls(text, placeholders)
        sample = urlsplit(template.render(**{k: _SAMPLE[k] for k in placeholders}))
        if sample.scheme not in ("http", "https") or not sample.netloc:
            raise TemplateError(f"{what} {text!r} is not an absolute http(s) URL")
        return template

    def render(self, **values: str) -> str:
        """The URL with every placeholder filled in (each value percent-encoded). A placeholder
        missing from `values` is a programming error, raised as such."""
        missing = set(self.placeholders) - set(values)
        if missing:
            raise TypeError(f"render() needs {', '.join(sorted(missing))}")
        quoted = {k: quote(values[k], safe=":") for k in self.placeholders}  # a host:port stays one
        return string.Formatter().vformat(self.text, (), quoted)
