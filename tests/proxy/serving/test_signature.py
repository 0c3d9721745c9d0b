"""The one signature check both servers use (the router before delivering, v2 before believing)."""

from __future__ import annotations

from proxy.serving.signature import notification_signature, signature_is_valid, signature_matches

VECTOR = ("9b162d8c2cf742e86aa619397ca943f2ff7fd1ec715e680f6fe1d613551c4b07"
          "d9de71ee8f24e75c29a71dc43ce6864d161e93087ccbbaf1c7c75e94b1895412")


def test_the_reference_signature_vector() -> None:
    assert notification_signature("ORDER-101", "200", "10000.00", "SB-Mid-server-TEST") == VECTOR
    payload = {"order_id": "ORDER-101", "status_code": "200", "gross_amount": "10000.00", "signature_key": VECTOR}
    assert signature_is_valid(payload, "SB-Mid-server-TEST")
    assert signature_is_valid({**payload, "signature_key": VECTOR.upper()}, "SB-Mid-server-TEST")
    assert not signature_is_valid({**payload, "gross_amount": "10000"}, "SB-Mid-server-TEST")
    assert not signature_is_valid(payload, "SB-Mid-server-OTHER")
    assert not signature_is_valid({**payload, "order_id": 101}, "SB-Mid-server-TEST")
    assert signature_matches("ORDER-101", "200", "10000.00", VECTOR, "SB-Mid-server-TEST")


def test_an_empty_key_verifies_nothing() -> None:
    # Anyone can compute a signature with the empty key: a tenant whose key is missing accepts nothing.
    forged = notification_signature("ORDER-1", "200", "10000.00", "")
    assert not signature_matches("ORDER-1", "200", "10000.00", forged, "")
    assert not signature_is_valid({"order_id": "ORDER-1", "status_code": "200", "gross_amount": "10000.00",
                                   "signature_key": forged}, "")
