"""The two customer emails, as a real SMTP relay receives them: headers, parts and content per tenant."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from proxy.v2.email_templates import TEMPLATES_DIR, EmailTemplates, TemplateProblem
from tests.conftest import wait_until
from tests.fixtures.v2_stack import Stack


def subject(message: EmailMessage) -> str:
    # A long Subject may be folded right after its name (a legal fold); unfolded, it starts with a space.
    return str(message["Subject"]).strip()


def parts(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())  # type: ignore[attr-defined]


async def test_buatfilm_gets_both_emails_in_indonesian_with_the_link_and_what_was_bought(stack: Stack) -> None:
    tenant = stack.add_tenant(slug="buatfilm", email_from="halo@buatfilm.agentbar.ai",
                              email_reply_to="bantuan@buatfilm.agentbar.ai")
    stack.admin.set("buatfilm", name="BuatFilm")
    status, body = await stack.create(tenant, "BF-1001", amount=149000, paymentMethod="gopay")
    assert status == 200
    await wait_until(lambda: len(stack.relay.to("BF-1001")) == 1)

    created = stack.relay.to("BF-1001")[0]
    assert created["From"] == "BuatFilm <halo@buatfilm.agentbar.ai>"
    assert created["To"] == "Budi <Buyer@Example.com>"
    assert created["Reply-To"] == "bantuan@buatfilm.agentbar.ai"
    assert subject(created) == "Pesanan BF-1001 di BuatFilm: selesaikan pembayaran Rp149.000"
    assert created["Message-ID"] == "<order_created.BF-1001.buatfilm@buatfilm.agentbar.ai>"
    assert created["Content-Language"] == "id" and created["Date"] is not None
    text, html = parts(created)
    for part in (text, html):
        assert body["paymentUrl"] in part  # the payment link, in both parts
        assert "BF-1001" in part and "Rp149.000" in part and "GoPay" in part and "Halo Budi" in part
    assert "Selesaikan pembayaran" in text and "Bayar sekarang" in html and "<a href=" in html

    await stack.notify("BF-1001", transaction_status="settlement")
    await wait_until(lambda: len(stack.relay.to("BF-1001")) == 2)
    paid = stack.relay.to("BF-1001")[1]
    assert subject(paid) == "Akses BuatFilm Anda sudah aktif (pesanan BF-1001)"  # the tenant's own template
    assert paid["Message-ID"] == "<payment_confirmation.BF-1001.buatfilm@buatfilm.agentbar.ai>"
    text, html = parts(paid)
    for part in (text, html):
        assert "Rp149.000" in part and "program BuatFilm" in part and "https://buatfilm.agentbar.ai" in part
        assert "WIB" in part  # when it was paid, in Jakarta time
    assert stack.relay.handler.envelopes[-1] == ("halo@buatfilm.agentbar.ai", ["Buyer@Example.com"])
    await wait_until(lambda: [row[:3] for row in stack.outbox_rows(tenant)] == [
        ("BF-1001", "order_created", "sent"), ("BF-1001", "payment_confirmation", "sent")])


async def test_an_english_tenant_gets_the_default_english_emails_and_html_is_escaped(stack: Stack) -> None:
    tenant = stack.add_tenant(email_language="en")
    await stack.create(tenant, "EN-1", amount=2500000, name="Ann <b>& Co</b>", paymentMethod=None)
    await stack.notify("EN-1", transaction_status="settlement")
    await wait_until(lambda: len(stack.relay.to("EN-1")) == 2)
    created, paid = stack.relay.to("EN-1")
    assert subject(created) == f"Your order EN-1 at Shop {tenant.slug}: complete your payment of IDR 2,500,000"
    assert subject(paid) == f"Payment received: order EN-1 at Shop {tenant.slug}"
    assert created["Reply-To"] is None  # the tenant has none
    text, html = parts(created)
    assert "Hello Ann <b>& Co</b>" in text and "Hello Ann &lt;b&gt;&amp; Co&lt;/b&gt;" in html
    assert "your choice on the payment page" in text  # no payment method given
    assert "Just reply to this email" in text
    text, html = parts(paid)
    assert "IDR 2,500,000" in text and "Paid on" in text and "Akses" not in text


def test_a_missing_name_fails_the_render_instead_of_leaving_a_gap(tmp_path: Path) -> None:
    own = tmp_path / "tenants" / "shop"
    own.mkdir(parents=True)
    (own / "order_created.subject.j2").write_text("Order {{ order.reference }}\n")
    (tmp_path / "id").symlink_to(TEMPLATES_DIR / "id")
    view = {"shop": {"name": "S", "site_url": "https://s", "reply_to": None}, "customer": {"name": "A", "email": "a@b.c"},
            "order": {"id": "O-1", "amount": "Rp1", "payment_method": "QRIS", "created_at": "-", "paid_at": "-",
                      "payment_link": "https://pay"}}
    templates = EmailTemplates(tmp_path)
    with pytest.raises(TemplateProblem, match=r"order_created.subject.j2 for tenant shop: UndefinedError: .*reference"):
        templates.render("shop", "id", "order_created", view)
    assert templates.render("other", "id", "order_created", view).subject == "Pesanan O-1 di S: selesaikan pembayaran Rp1"
    without_link = {**view, "order": {k: v for k, v in view["order"].items() if k != "payment_link"}}  # type: ignore[union-attr]
    with pytest.raises(TemplateProblem, match="payment_link"):  # an order email without its link is never sent
        templates.render("other", "id", "order_created", without_link)
