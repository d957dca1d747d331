"""Inputs take an object's Relay global id or Sharecart's own raw id (the one webhook payloads and exports
carry), and refuse an id of another type either way (INVALID_INPUT)."""

import pytest

from api.relay import global_id, raw_id
from engine.errors import ErrorCode, RuleViolation


@pytest.mark.parametrize("given", ["ord_0a1b", global_id("Order", "ord_0a1b")])
def test_an_order_id_is_taken_raw_or_global(given):
    assert raw_id(given, "Order", "orderId") == "ord_0a1b"


@pytest.mark.parametrize("given", ["rf_0a1b", global_id("Refund", "rf_0a1b"), "ord_", "nonsense", ""])
def test_anything_else_is_invalid_input(given):
    with pytest.raises(RuleViolation) as e:
        raw_id(given, "Order", "orderId")
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "orderId")
