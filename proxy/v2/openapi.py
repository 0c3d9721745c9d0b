"""The OpenAPI document of the v2 payment API, served at /openapi.json (a test keeps it true)."""

from __future__ import annotations

from typing import Any

from proxy.v2.settings import VERSION

_ERROR = {"type": "object", "properties": {"success": {"type": "boolean"}, "error": {"type": "string"},
                                           "message": {"type": "string"}}}
_TENANT = [{"name": "tenant", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "tenant slug, when the Host names none (or X-Tenant-Slug from a trusted proxy)"}]

# v1's health keys, added to v2's where the name is free.
_CLOCK = {"uptime": {"type": "number"}, "timestamp": {"type": "string"}, "service": {"type": "string"}}

_ORDER_ID = {"name": "orderId", "in": "path", "required": True, "schema": {"type": "string"}}


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
            "summary": "Service and database health (v2's keys, plus v1's uptime, timestamp and service)",
            "responses": {"200": _json({"type": "object", "properties": {
                "status": {"type": "string"}, "version": {"type": "string"}, "database": {"type": "string"},
                "tenant": {"type": "string"}, **_CLOCK}}, "healthy"),
                "503": {"description": "the database is unreachable"}}}},
        "/health/ready": {"get": {
            "summary": "Readiness, as v1 has it: the payment database answers",
            "responses": {"200": _json({"type": "object", "properties": {
                "status": {"type": "string"}, "database": {"type": "string"}, **_CLOCK}}, "ready"),
                "503": {"description": "not ready: the database is unreachable"}}}},
        "/health/live": {"get": {
            "summary": "Liveness, as v1 has it: the process answers (no dependency asked)",
            "responses": {"200": _json({"type": "object", "properties": {"status": {"type": "string"}, **_CLOCK}},
                                       "alive")}}},
        "/admin/stats": {"get": {
            "summary": "Order counts and revenue of one tenant (Bearer admin token of that tenant)",
            "parameters": _TENANT,
            "responses": {"200": _json({"type": "object", "properties": {"success": {"type": "boolean"}, "stats": {
                "type": "object", "properties": {k: {"type": "integer"} for k in (
                    "pending", "paid", "failed", "expired", "refunded", "revenue")}}}}, "the numbers"),
                "401": _json(_ERROR, "missing or wrong admin token")}}},
        "/admin/reconcile": {"get": {
            "summary": "Orders to reconcile: pending past olderThan seconds, or with an unconfirmed notification "
                       "(Bearer admin token)",
            "parameters": [*_TENANT, *({"name": n, "in": "query", "required": False, "schema": {"type": "integer"}}
                                       for n in ("olderThan", "within", "limit"))],
            "responses": {"200": _json({"type": "object", "properties": {
                "success": {"type": "boolean"}, "pendingPastThreshold": {"type": "integer"},
                "orders": {"type": "array"}}}, "the candidates, oldest first"),
                "400": _json(_ERROR, "a parameter out of range"),
                "401": _json(_ERROR, "missing or wrong admin token")}}},
        "/admin/reconcile/{orderId}": {
            "post": {"summary": "Settle an order on Midtrans' Get Status, by the webhook's rules (Bearer admin token)",
                     "parameters": [_ORDER_ID, *_TENANT],
                     "responses": {"200": _json({"type": "object", "properties": {
                         "result": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"}}},
                         "applied, no_change, ignored_precedence, unknown_status, amount_mismatch or "
                         "unknown_at_midtrans"),
                         "401": _json(_ERROR, "missing or wrong admin token"),
                         "404": _json(_ERROR, "no such order"),
                         "503": _json(_ERROR, "Get Status unavailable; nothing applied")}},
            "get": {"summary": "What Midtrans says about an order, applying nothing (Bearer admin token)",
                    "parameters": [_ORDER_ID, *_TENANT],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "v2": {"type": "string"}, "status": {"type": "string"}, "midtrans": {"type": "object"}}},
                        "Midtrans' answer and the order status it means"),
                        "401": _json(_ERROR, "missing or wrong admin token"),
                        "503": _json(_ERROR, "Get Status unavailable")}}},
        "/admin/login": {"post": {
            "summary": "Sign in to the admin page (v1's): a 15-minute HS256 token for this tenant only",
            "parameters": _TENANT,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["username", "password"],
                "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
            "responses": {"200": _json({"type": "object", "properties": {
                "success": {"type": "boolean"}, "token": {"type": "string"}, "tokenType": {"type": "string"},
                "expiresIn": {"type": "integer"}, "user": {"type": "object"}}}, "signed in"),
                "400": _json(_ERROR, "not a JSON object with username and password"),
                "401": _json(_ERROR, "wrong user or password (or no sign-in set for the tenant)"),
                "413": _json(_ERROR, "body too large"),
                "429": _json(_ERROR, "too many failed sign-ins from this client or for this tenant")}}},
        "/admin/orders": {"get": {
            "summary": "The tenant's orders, newest first, in v1's row shape (Bearer token from /admin/login)",
            "parameters": [*_TENANT, *({"name": n, "in": "query", "required": False, "schema": {"type": "integer"}}
                                       for n in ("page", "limit")),
                           {"name": "status", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "success": {"type": "boolean"}, "orders": {"type": "array"}, "pagination": {"type": "object"}}},
                "one page of orders"),
                "400": _json(_ERROR, "a parameter out of range"),
                "401": _json(_ERROR, "missing, expired or another tenant's token")}}},
        "/admin/orders/{orderId}": {"put": {
            "summary": "Set an order's status by hand, if the status rules allow the move (recorded with the admin "
                       "as actor)",
            "parameters": [_ORDER_ID, *_TENANT],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}}}},
            "responses": {"200": _json({"type": "object", "properties": {
                "success": {"type": "boolean"}, "changed": {"type": "boolean"}, "from": {"type": "string"},
                "order": {"type": "object"}}}, "the order as it now is"),
                "400": _json(_ERROR, "not a known status"),
                "401": _json(_ERROR, "missing, expired or another tenant's token"),
                "404": _json(_ERROR, "no such order"),
                "409": _json(_ERROR, "the move is not allowed from the order's status"),
                "413": _json(_ERROR, "body too large")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
    },
}
