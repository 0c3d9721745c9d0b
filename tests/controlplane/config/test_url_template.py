"""URL templates: every placeholder is known and renders, or the template is refused where it enters."""

from __future__ import annotations

import pytest

from controlplane.config.url_template import (
    DEFAULT_FINISH_URL_TEMPLATE,
    FINISH_PLACEHOLDERS,
    NOTIFICATION_PLACEHOLDERS,
    TemplateError,
    UrlTemplate,
)


def test_a_checked_template_renders_with_each_value_encoded() -> None:
    template = UrlTemplate.parse(DEFAULT_FINISH_URL_TEMPLATE, FINISH_PLACEHOLDERS)
    assert template.render(slug="shop", base_domain="agentbar.ai", order_id="A B&c") == \
        "https://shop.agentbar.ai/thank-you?order_id=A%20B%26c"
    literal = UrlTemplate.parse("http://127.0.0.1:3010/{{x}}?tenant={slug}", NOTIFICATION_PLACEHOLDERS)
    assert literal.render(slug="s", base_domain="d") == "http://127.0.0.1:3010/{x}?tenant=s"


@pytest.mark.parametrize(("text", "placeholders", "message"), [
    ("https://{slug}/{order_id}", NOTIFICATION_PLACEHOLDERS,
     "{order_id} is not a placeholder; valid placeholders: {slug}, {base_domain}"),
    ("https://{slug}/{}", FINISH_PLACEHOLDERS, "{} has no name"),
    ("https://{slug.upper}/", FINISH_PLACEHOLDERS, "{slug.upper} is not a placeholder"),
    ("https://{slug[0]}/", FINISH_PLACEHOLDERS, "{slug[0]} is not a placeholder"),
    ("https://{slug:>20}/", FINISH_PLACEHOLDERS, "{slug} takes no format spec or conversion"),
    ("https://{slug}/{order_id", FINISH_PLACEHOLDERS, "cannot be read"),
    ("https://{slug}/}", FINISH_PLACEHOLDERS, "cannot be read"),
    ("{slug}.example/thank-you", FINISH_PLACEHOLDERS, "is not an absolute http(s) URL"),
    ("javascript:alert({order_id})", FINISH_PLACEHOLDERS, "is not an absolute http(s) URL"),
])
def test_a_template_that_could_fail_is_refused_with_the_valid_placeholders(
        text: str, placeholders: tuple[str, ...], message: str) -> None:
    with pytest.raises(TemplateError) as raised:
        UrlTemplate.parse(text, placeholders, what="--finish-url-template")
    assert message in str(raised.value) and "--finish-url-template" in str(raised.value)
