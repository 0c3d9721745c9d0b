"""The customer emails as jinja2 templates: subject, plain text and HTML, in the tenant's language.

The folder (default: the repository's templates/email; `dualstack v2 serve --email-templates DIR`):

    <language>/<template>.subject.j2 | .txt.j2 | .html.j2     language: id, en
    tenants/<slug>/<template>.subject.j2 | ...                a tenant's own version of any part

A tenant's own file wins over its language's. The templates get a prepared view (`order_view`):
amounts, dates and the payment method already spelled for the language, so they stay free of
logic. StrictUndefined: a name the view lacks fails the render (the outbox dead-letters the email
with the reason), never an empty gap in a customer's email.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import jinja2

TEMPLATES_DIR: Final = Path(__file__).resolve().parents[2] / "templates" / "email"
ORDER_CREATED: Final = "order_created"
PAYMENT_CONFIRMATION: Final = "payment_confirmation"
TEMPLATES: Final = (ORDER_CREATED, PAYMENT_CONFIRMATION)
PARTS: Final = ("subject", "txt", "html")

_WIB: Final = timezone(timedelta(hours=7), "WIB")  # Asia/Jakarta (no daylight saving)
_MONTHS: Final = {
    "id": ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September", "Oktober",
           "November", "Desember"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
}
# v1's paymentMethod values (the funnel's buttons), as a customer reads them.
_METHODS: Final = {"gopay": "GoPay", "shopeepay": "ShopeePay", "ovo": "OVO", "dana": "DANA", "linkaja": "LinkAja",
                   "bca": "BCA Virtual Account", "bni": "BNI Virtual Account", "bri": "BRI Virtual Account",
                   "mandiri": "Mandiri Virtual Account", "bsi": "BSI Virtual Account", "jago": "Bank Jago",
                   "qris": "QRIS", "midtrans": "Midtrans"}
_ANY_METHOD: Final = {"id": "pilihan Anda di halaman pembayaran", "en": "your choice on the payment page"}


class TemplateProblem(Exception):
    """A template is missing or failed to render; the message names it (the email is dead-lettered)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


def amount_text(amount: int, language: str) -> str:
    if language == "id":
        return "Rp" + f"{amount:,}".replace(",", ".")
    return f"IDR {amount:,}"


def date_text(moment: datetime | None, language: str) -> str | None:
    if moment is None:
        return None
    local = moment.astimezone(_WIB)
    month = _MONTHS[language][local.month - 1]
    return f"{local.day} {month} {local.year}, {local:%H:%M} WIB"


def order_view(*, shop_name: str, site_url: str, reply_to: str | None, language: str,
               row: Mapping[str, Any]) -> dict[str, Any]:
    """What the templates may show, from an outbox row joined with its order."""
    method = row["payment_method"]
    order = {
        "id": row["order_id"],
        "amount": amount_text(int(row["gross_amount"]), language),
        "payment_method": _METHODS.get(method, method) if method else _ANY_METHOD[language],
        "created_at": date_text(row["created_at"], language) or "-",
        "paid_at": date_text(row["paid_at"], language) or "-",  # unknown for an order paid on v1
    }
    if row["redirect_url"]:  # absent otherwise: a template that needs it fails, it never shows "None"
        order["payment_link"] = row["redirect_url"]
    return {"shop": {"name": shop_name, "site_url": site_url, "reply_to": reply_to},
            "customer": {"name": row["customer_name"], "email": row["email"]}, "order": order}


class EmailTemplates:
    def __init__(self, root: Path = TEMPLATES_DIR) -> None:
        self.root = root
        self._environments: dict[tuple[str, str], jinja2.Environment] = {}

    def _environment(self, slug: str, language: str) -> jinja2.Environment:
        key = (slug, language)
        environment = self._environments.get(key)
        if environment is None:
            loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(self.root / "tenants" / slug)),
                                          jinja2.FileSystemLoader(str(self.root / language))])
            environment = self._environments[key] = jinja2.Environment(
                loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
                trim_blocks=True, lstrip_blocks=True)
        return environment

    def render(self, slug: str, language: str, template: str, view: Mapping[str, Any]) -> Rendered:
        environment = self._environment(slug, language)
        parts = {}
        for part in PARTS:
            name = f"{template}.{part}.j2"
            try:
                parts[part] = environment.get_template(name).render(view)
            except jinja2.TemplateNotFound:
                raise TemplateProblem(f"template {name} not found for tenant {slug} ({language}) under "
                                      f"{self.root}") from None
            except jinja2.TemplateError as exc:
                raise TemplateProblem(f"template {name} for tenant {slug}: {type(exc).__name__}: {exc}") from None
        return Rendered(subject=" ".join(parts["subject"].split()), text=parts["txt"], html=parts["html"])
