"""The OpenAPI document of the v2 payment API, served at /openapi.json (a test keeps it true)."""

from __future__ import annotations

from typing import Any

from proxy.v2.settings import VERSION

_ERROR = {"type": "object", "properties": {"success": {"type": "boolean"}, "error": {"type": "string"},
                                           "message": {"type": "string"}}}
_TENANT = [{"name": "tenant", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "tenant slug, when the Host names none (or X-Tenant-Slug from a trusted proxy)"}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "dualstack v2 payment API", "version": VERSION,
             "description": "Tenant-aware payments (Midtrans Snap), compatible with the v1 API."},
    "paths": {
        "/payment/create": {"post": {
            "summary": "Create an order and its Snap payment page (idempotent per order id)",
            "parameters": _TENANT,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["orderId", "amount", "email", "phone", "name"],
                "properties": {"orderId": {"type": "string", "maxLength": 50}, "amount": {"type": "integer"},
                               "email": {"type": "string"}, "phone": {"type": "string"},
                               "name": {"type": "string"}, "paymentMethod": {"type": "string"}}}}}},
            "responses": {
                "200": _json({"type": "object", "properties": {
                    "success": {"type": "boolean"}, "paymentUrl": {"type": "string"},
                    "redirectUrl": {"type": "string"}, "token": {"type": "string"},
                    "orderId": {"type": "string"}}}, "payment page created (or the stored one, on a repeat)"),
                "400": _json({"type": "object", "properties": {"error": {"type": "string"},
                                                               "message": {"type": "string"},
                                                               "details": {"type": "array"}}},
                             "validation error (v1's shape)"),
                "403": _json(_ERROR, "the tenant is suspended"),
                "404": _json(_ERROR, "unknown tenant"),
                "409": _json(_ERROR, "order id already used differently, or not pending"),
                "429": _json(_ERROR, "monthly order limit of the plan reached"),
                "502": _json(_ERROR, "Midtrans rejected the request or the tenant's key"),
                "503": _json(_ERROR, "Midtrans or the database unavailable"),
            }}},
        "/orders/{orderId}/status": {"get": {
            "summary": "An order's status (v1's shape; status in upper case, e.g. PAID)",
            "parameters": [{"name": "orderId", "in": "path", "required": True, "schema": {"type": "string"}},
                           *_TENANT],
            "responses": {
                "200": _json({"type": "object", "properties": {"success": {"type": "boolean"}, "order": {
                    "type": "object", "properties": {
                        "id": {"type": "string"}, "status": {"type": "string"},
                        "totalAmount": {"type": "integer"}, "customerName": {"type": "string"},
                        "email": {"type": "string"}}}}}, "the order"),
                "404": _json(_ERROR, "no such order for this tenant, or unknown tenant"),
            }}},
        "/webhooks/midtrans": {"post": {
            "summary": "Midtrans payment notification (signature verified with the tenant's key)",
            "parameters": _TENANT,
            "responses": {"200": {"description": "handled (applied, duplicate, ignored or unknown order)"},
                          "400": _json(_ERROR, "malformed notification"),
                          "403": _json(_ERROR, "invalid signature"),
                          "404": _json(_ERROR, "unknown tenant"),
                          "503": _json(_ERROR, "database unavailable; Midtrans retries")}}},
        "/health": {"get": {
            "summary": "Service and database health",
            "responses": {"200": _json({"type": "object", "properties": {
                "status": {"type": "string"}, "version": {"type": "string"}, "database": {"type": "string"},
                "tenant": {"type": "string"}}}, "healthy"),
                "503": {"description": "the database is unreachable"}}}},
        "/admin/stats": {"get": {
            "summary": "Order counts and revenue of one tenant (Bearer admin token of that tenant)",
            "parameters": _TENANT,
            "responses": {"200": _json({"type": "object", "properties": {"success": {"type": "boolean"}, "stats": {
                "type": "object", "properties": {k: {"type": "integer"} for k in (
                    "pending", "paid", "failed", "expired", "refunded", "revenue")}}}}, "the numbers"),
                "401": _json(_ERROR, "missing or wrong admin token")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
    },
}
