"""tau2's retail domain: an online store's products, users and orders, and the agent's tools.

Re-implemented from tau2-bench's published specification; the tool names, arguments,
result shapes and error messages are tau2's, so trajectories and DB checks agree with it.
Every write goes through :class:`State` (copy on first write), never into the shared base.

Semantics worth knowing (tau2's, kept on purpose):

* Results are tau2's pydantic dumps: an order always lists its optional fields
  (``cancel_reason``, ``exchange_*``, ``return_*``) with ``None`` when unset.
* Gift-card balances change immediately (cancel refunds, pending-item price differences,
  payment changes); other methods are only recorded in ``payment_history``.
* Cancelling refunds *every* ``payment_history`` entry, as tau2 does.
* ``modify_pending_order_items`` records the un-rounded price difference; exchanges round it.
  It also gives every rewritten item the price and options of the *last* new item, as tau2
  does today (tau2-bench issues #317/#318); the gold DB is built by the same code, so the
  DB check needs it. ``RetailTools.reuse_last_variant = False`` gives each item its own.
* Name and email lookups ignore case, accents and surrounding blanks (tau2's
  ``fold_for_match``); the zip must match exactly.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from ..env import (
    DATA_DIR,
    GENERIC,
    READ,
    WRITE,
    Domain,
    ToolError,
    Toolkit,
    calculate_expression,
    fold_text,
    load_json,
    tool,
)

_DIR = DATA_DIR / "domains" / "retail"

CANCEL_REASONS = ("no longer needed", "ordered by mistake")

# tau2's Order model, in field order: its dumps always carry the optional fields.
_ORDER_FIELDS = (
    "order_id", "user_id", "address", "items", "status", "fulfillments", "payment_history",
    "cancel_reason", "exchange_items", "exchange_new_items", "exchange_payment_method_id",
    "exchange_price_difference", "return_items", "return_payment_method_id",
)


def _order_view(order: dict[str, Any]) -> dict[str, Any]:
    view = {name: order.get(name) for name in _ORDER_FIELDS}
    view.update((k, v) for k, v in order.items() if k not in view)
    return view


def _address(address1: str, address2: str, city: str, state: str, country: str, zip: str) -> dict[str, str]:
    # tau2's UserAddress field order, which is also the order in db.json
    return {"address1": address1, "address2": address2, "city": city, "country": country, "state": state, "zip": zip}




def _is_gift_card(method: dict[str, Any]) -> bool:
    return method.get("source") == "gift_card"


# --- the agent's tools ---------------------------------------------------------------------


def _lower(text: str) -> str:
    return text.lower()


class RetailTools(Toolkit):
    """The retail agent's tools over tables ``products``, ``users`` and ``orders``."""

    side = "assistant"

    def _fold(self) -> Callable[[str], str]:
        """How names and emails compare: tau2 lowers case; lenient lookups also strip blanks and accents."""
        return fold_text if self.behaviour.lenient_lookups else _lower
    reuse_last_variant: bool = True  # tau2's modify_pending_order_items bug, see the module docstring

    # lookups (tau2's messages) -------------------------------------------------------------

    def _order(self, order_id: str) -> dict[str, Any]:
        order = self.db.get("orders", order_id)
        if order is None:
            raise ToolError("Order not found")
        return order

    def _user(self, user_id: str) -> dict[str, Any]:
        user = self.db.get("users", user_id)
        if user is None:
            raise ToolError("User not found")
        return user

    def _product(self, product_id: str) -> dict[str, Any]:
        product = self.db.get("products", product_id)
        if product is None:
            raise ToolError("Product not found")
        return product

    def _variant(self, product_id: str, item_id: str) -> dict[str, Any]:
        variant = self._product(product_id)["variants"].get(item_id)
        if variant is None:
            raise ToolError("Variant not found")
        return variant

    def _payment_method(self, user_id: str, payment_method_id: str) -> dict[str, Any]:
        method = self._user(user_id)["payment_methods"].get(payment_method_id)
        if method is None:
            raise ToolError("Payment method not found")
        return method

    def _add_to_gift_card(self, user_id: str, payment_method_id: str, amount: float) -> None:
        card = self.db.edit("users", user_id)["payment_methods"][payment_method_id]
        card["balance"] = round(card["balance"] + amount, 2)

    @staticmethod
    def _check_items_in_order(order: dict[str, Any], item_ids: list[str], message: str) -> None:
        """Each id (duplicates allowed) must occur in the order at least as often as in ``item_ids``."""
        in_order = [item["item_id"] for item in order["items"]]
        for item_id in item_ids:
            if item_ids.count(item_id) > in_order.count(item_id):
                raise ToolError(message.format(item_id=item_id))

    def _price_difference(self, order: dict[str, Any], item_ids: list[str], new_item_ids: list[str],
                          refuse_same: bool) -> tuple[float, list[dict[str, Any]]]:
        """Sum of (new price - old price), and the new variants: each must be an available variant of the old item's product."""
        difference, variants = 0, []
        for item_id, new_item_id in zip(item_ids, new_item_ids):
            if refuse_same and item_id == new_item_id:
                raise ToolError("The new item id should be different from the old item id")
            item = next((item for item in order["items"] if item["item_id"] == item_id), None)
            if item is None:
                raise ToolError(f"Item {item_id} not found")
            variant = self._variant(item["product_id"], new_item_id)
            if not variant["available"]:
                raise ToolError(f"New item {new_item_id} not found or available")
            difference += variant["price"] - item["price"]
            variants.append(variant)
        return difference, variants

    # tools ------------------------------------------------------------------------------------

    @tool(GENERIC)
    def calculate(self, expression: str) -> str:
        """Evaluate an arithmetic expression and return the result rounded to two decimals.

        Args:
            expression: The expression, e.g. '(49.99 - 12.5) * 2'. Only digits, + - * /, parentheses, '.' and spaces are allowed.
        """
        return calculate_expression(expression)

    @tool(WRITE)
    def cancel_pending_order(self, order_id: str, reason: str) -> dict:
        """Cancel an order whose status is 'pending'; processed or delivered orders cannot be cancelled.
        Explain the cancellation and get an explicit yes from the user first. Every payment is refunded:
        to a gift card at once, to other payment methods within 5-7 business days. Returns the cancelled order.

        Args:
            order_id: The order id, starting with '#', e.g. '#W0000000'.
            reason: Why the order is cancelled: 'no longer needed' or 'ordered by mistake'.
        """
        order = self._order(order_id)
        if order["status"] != "pending":
            raise ToolError("Non-pending order cannot be cancelled")
        if reason not in CANCEL_REASONS:
            raise ToolError("Invalid reason")
        refunds = []
        for payment in order["payment_history"]:
            method_id = payment["payment_method_id"]
            refunds.append({"transaction_type": "refund", "amount": payment["amount"], "payment_method_id": method_id})
            if _is_gift_card(self._payment_method(order["user_id"], method_id)):
                self._add_to_gift_card(order["user_id"], method_id, payment["amount"])
        order = self.db.edit("orders", order_id)
        order["status"] = "cancelled"
        order["cancel_reason"] = reason
        order["payment_history"].extend(refunds)
        return _order_view(order)

    @tool(WRITE)
    def exchange_delivered_order_items(
        self, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
    ) -> dict:
        """Request an exchange of items of a delivered order for other variants of the same products.
        A delivered order can be returned or exchanged only once. Explain the exchange and get an
        explicit yes from the user first. Returns the order, now 'exchange requested'.

        Args:
            order_id: The order id, starting with '#', e.g. '#W0000000'.
            item_ids: Ids of the items to exchange, e.g. ['1008292230']; list an id twice to exchange two of it.
            new_item_ids: Ids of the replacement items, position by position: each must be an available variant of the same product as the item at that position in item_ids.
            payment_method_id: The user's payment method that pays, or receives, the price difference, e.g. 'gift_card_0000000' or 'credit_card_0000000' (see the user's or the order's details).
        """
        order = self._order(order_id)
        if order["status"] != "delivered":
            raise ToolError("Non-delivered order cannot be exchanged")
        self._check_items_in_order(order, item_ids, "Number of {item_id} not found.")
        if len(item_ids) != len(new_item_ids):
            raise ToolError("The number of items to be exchanged should match.")
        difference = round(self._price_difference(order, item_ids, new_item_ids, refuse_same=False)[0], 2)
        method = self._payment_method(order["user_id"], payment_method_id)
        if _is_gift_card(method) and method["balance"] < difference:
            raise ToolError("Insufficient gift card balance to pay for the price difference")
        order = self.db.edit("orders", order_id)
        order["status"] = "exchange requested"
        order["exchange_items"] = sorted(item_ids)
        order["exchange_new_items"] = sorted(new_item_ids)
        order["exchange_payment_method_id"] = payment_method_id
        order["exchange_price_difference"] = difference
        return _order_view(order)

    @tool(READ)
    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str:
        """Find a user's id from their first name, last name and zip code (names ignore case and accents).
        Prefer find_user_id_by_email; use this when the user cannot give their email or it is not found.

        Args:
            first_name: The user's first name, e.g. 'John'.
            last_name: The user's last name, e.g. 'Doe'.
            zip: The zip code of the user's default address, e.g. '12345'.
        """
        fold = self._fold()
        first, last = fold(first_name), fold(last_name)
        for user_id, user in self.db.items("users"):
            name = user["name"]
            if fold(name["first_name"]) == first and fold(name["last_name"]) == last and user["address"]["zip"] == zip:
                return user_id
        raise ToolError("User not found")

    @tool(READ)
    def find_user_id_by_email(self, email: str) -> str:
        """Find a user's id from their email address (ignoring case and accents).

        Args:
            email: The user's email, e.g. 'something@example.com'.
        """
        fold = self._fold()
        wanted = fold(email)
        for user_id, user in self.db.items("users"):
            if fold(user["email"]) == wanted:
                return user_id
        raise ToolError("User not found")

    @tool(READ)
    def get_order_details(self, order_id: str) -> dict:
        """Show an order: status, items, shipping address, fulfillments and payment history.

        Args:
            order_id: The order id, starting with '#', e.g. '#W0000000'.
        """
        return _order_view(self._order(order_id))

    @tool(READ)
    def get_product_details(self, product_id: str) -> dict:
        """Show a product type with all its variants (items): options, price and availability.

        Args:
            product_id: The product id, e.g. '6086499569' (not an item id).
        """
        return self._product(product_id)

    @tool(READ)
    def get_item_details(self, item_id: str) -> dict:
        """Show one item (a variant of a product): options, price and availability.

        Args:
            item_id: The item id, e.g. '1008292230' (not a product id).
        """
        for product in self.db.values("products"):
            if item_id in product["variants"]:
                return product["variants"][item_id]
        raise ToolError("Item not found")

    @tool(READ)
    def get_user_details(self, user_id: str) -> dict:
        """Show a user's profile: name, default address, email, payment methods and order ids.

        Args:
            user_id: The user id, e.g. 'sara_doe_496'.
        """
        return self._user(user_id)

    @tool(READ)
    def list_all_product_types(self) -> str:
        """List every product type the store sells (50 of them) as a JSON object mapping product name
        to product id, sorted by name. Each product type comes in several items with their own ids and options.
        """
        return json.dumps({p["name"]: p["product_id"] for p in self.db.values("products")}, sort_keys=True)

    @tool(WRITE)
    def modify_pending_order_address(
        self, order_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str
    ) -> dict:
        """Change the shipping address of a pending order. Explain the change and get an explicit yes
        from the user first. Returns the updated order.

        Args:
            order_id: The order id, starting with '#', e.g. '#W0000000'.
            address1: First address line, e.g. '123 Main St'.
            address2: Second address line, e.g. 'Apt 1', or ''.
            city: City, e.g. 'San Francisco'.
            state: State, e.g. 'CA'.
            country: Country, e.g. 'USA'.
            zip: Zip code, e.g. '12345'.
        """
        if "pending" not in self._order(order_id)["status"]:
            raise ToolError("Non-pending order cannot be modified")
        order = self.db.edit("orders", order_id)
        order["address"] = _address(address1, address2, city, state, country, zip)
        return _order_view(order)

    @tool(WRITE)
    def modify_pending_order_items(
        self, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
    ) -> dict:
        """Swap items of a pending order for other variants of the same products; this can be done only
        once per order. Explain the change and get an explicit yes from the user first. The price
        difference is charged to, or refunded to, the given payment method. Returns the updated order.

        Args:
            order_id: The order id, starting with '#', e.g. '#W0000000'.
            item_ids: Ids of the items to change, e.g. ['1008292230']; list an id twice to change two of it.
            new_item_ids: Ids of the new items, position by position: each must be a different, available variant of the same product as the item at that position in item_ids.
            payment_method_id: The user's payment method that pays, or receives, the price difference, e.g. 'gift_card_0000000' or 'credit_card_0000000' (see the user's or the order's details).
        """
        order = self._order(order_id)
        if order["status"] != "pending":
            raise ToolError("Non-pending order cannot be modified")
        self._check_items_in_order(order, item_ids, "{item_id} not found")
        if len(item_ids) != len(new_item_ids):
            raise ToolError("The number of items to be exchanged should match")
        difference, variants = self._price_difference(order, item_ids, new_item_ids, refuse_same=True)
        method = self._payment_method(order["user_id"], payment_method_id)
        if _is_gift_card(method) and method["balance"] < difference:
            raise ToolError("Insufficient gift card balance to pay for the new item")

        order = self.db.edit("orders", order_id)
        order["payment_history"].append({
            "transaction_type": "payment" if difference > 0 else "refund",
            "amount": float(abs(difference)),
            "payment_method_id": payment_method_id,
        })
        if _is_gift_card(method):
            self._add_to_gift_card(order["user_id"], payment_method_id, -difference)
        # One at a time, each taking the first item still carrying the old id: with duplicates,
        # or a new id that is also an old one, this is the order tau2 rewrites them in.
        for item_id, new_item_id, variant in zip(item_ids, new_item_ids, variants):
            item = next(item for item in order["items"] if item["item_id"] == item_id)
            if self.reuse_last_variant:
                variant = variants[-1]
            item["item_id"] = new_item_id
            item["price"] = variant["price"]
            item["options"] = dict(variant["options"])
        order["status"] = "pending (item modified)"
        return _order_view(order)

    @tool(WRITE)
    def modify_pending_order_payment(self, order_id: str, payment_method_id: str) -> dict:
        """Pay a pending order with another of the user's payment methods: the new method is charged
        and the original one refunded. Explain the change and get an explicit yes from the user first.
        Returns the updated order.

        Args:
            order_id: The order id, starting with '#', e.g. '#W0000000'.
            payment_method_id: The user's new payment method, e.g. 'gift_card_0000000' or 'credit_card_0000000' (see the user's or the order's details).
        """
        order = self._order(order_id)
        if "pending" not in order["status"]:
            raise ToolError("Non-pending order cannot be modified")
        method = self._payment_method(order["user_id"], payment_method_id)
        history = order["payment_history"]
        if len(history) != 1 or history[0]["transaction_type"] != "payment":
            raise ToolError("There should be exactly one payment for a pending order")
        old_method_id = history[0]["payment_method_id"]
        if old_method_id == payment_method_id:
            raise ToolError("The new payment method should be different from the current one")
        amount = history[0]["amount"]
        if _is_gift_card(method) and method["balance"] < amount:
            raise ToolError("Insufficient gift card balance to pay for the order")

        order = self.db.edit("orders", order_id)
        order["payment_history"].extend([
            {"transaction_type": "payment", "amount": amount, "payment_method_id": payment_method_id},
            {"transaction_type": "refund", "amount": amount, "payment_method_id": old_method_id},
        ])
        if _is_gift_card(method):
            self._add_to_gift_card(order["user_id"], payment_method_id, -amount)
        if _is_gift_card(self._payment_method(order["user_id"], old_method_id)):
            self._add_to_gift_card(order["user_id"], old_method_id, amount)
        return _order_view(order)

    @tool(WRITE)
    def modify_user_address(
        self, user_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str
    ) -> dict:
        """Change a user's default address. Explain the change and get an explicit yes from the user
        first. Returns the updated user.

        Args:
            user_id: The user id, e.g. 'sara_doe_496'.
            address1: First address line, e.g. '123 Main St'.
            address2: Second address line, e.g. 'Apt 1', or ''.
            city: City, e.g. 'San Francisco'.
            state: State, e.g. 'CA'.
            country: Country, e.g. 'USA'.
            zip: Zip code, e.g. '12345'.
        """
        self._user(user_id)
        user = self.db.edit("users", user_id)
        user["address"] = _address(address1, address2, city, state, country, zip)
        return user

    @tool(WRITE)
    def return_delivered_order_items(self, order_id: str, item_ids: list[str], payment_method_id: str) -> dict:
        """Request the return of items of a delivered order; the user then gets an email on how to send
        them back. Explain the return and get an explicit yes from the user first. Returns the order,
        now 'return requested'.

        Args:
            order_id: The order id, starting with '#', e.g. '#W0000000'.
            item_ids: Ids of the items to return, e.g. ['1008292230']; list an id twice to return two of it.
            payment_method_id: Where the refund goes: the order's original payment method or one of the user's gift cards, e.g. 'gift_card_0000000' or 'credit_card_0000000'.
        """
        order = self._order(order_id)
        if order["status"] != "delivered":
            raise ToolError("Non-delivered order cannot be returned")
        method = self._payment_method(order["user_id"], payment_method_id)
        if not _is_gift_card(method) and payment_method_id != order["payment_history"][0]["payment_method_id"]:
            raise ToolError("Payment method should be the original payment method")
        self._check_items_in_order(order, item_ids, "Some item not found")
        order = self.db.edit("orders", order_id)
        order["status"] = "return requested"
        order["return_items"] = sorted(item_ids)
        order["return_payment_method_id"] = payment_method_id
        return _order_view(order)

    @tool(GENERIC)
    def transfer_to_human_agents(self, summary: str) -> str:
        """Hand the conversation to a human agent, with a summary of the user's issue. Transfer only
        if the user explicitly asks for a human, or if the policy and your tools cannot solve the issue.

        Args:
            summary: A short summary of the user's issue.
        """
        return "Transfer successful"


def _load_db() -> dict[str, dict[str, Any]]:
    db = load_json(_DIR / "db.json")
    missing = {"products", "users", "orders"} - set(db)
    if missing:
        raise ValueError(f"{_DIR / 'db.json'}: missing tables {sorted(missing)}")
    return db


def _policy() -> str:
    return (_DIR / "policy.md").read_text(encoding="utf-8")


def domain() -> Domain:
    return Domain(name="retail", assistant_tools=RetailTools, load_db=_load_db, policy=_policy)
