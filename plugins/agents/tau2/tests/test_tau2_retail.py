"""The retail domain: gold replays of every task, wrong trajectories, tool semantics, delta size."""
import copy
import json

import pytest
from matrix_plugin_tau2.domains.retail import RetailTools
from matrix_plugin_tau2.domains.retail import domain as retail_domain
from matrix_plugin_tau2.versions import Behaviour
from matrix_plugin_tau2.env import Domain, get_domain


@pytest.fixture(scope="module")
def retail():
    return get_domain("retail")


@pytest.fixture(scope="module")
def tasks(retail):
    with open(retail.tasks_file(), encoding="utf-8") as f:
        return {t["id"]: t for t in json.load(f)}


def gold(task):
    return task["evaluation_criteria"]["actions"]


def replayed(domain, task, actions=None):
    env = domain.environment()
    env.apply_initial_state(task["initial_state"])
    return env, env.replay(gold(task) if actions is None else actions)


# Gold actions that fail in tau2 as well: the user first gives a wrong email, name or zip,
# an order id without its 'W', the docstring's example product id; task 64 tries an
# exchange on a pending order before modifying it; in task 105 the gift card (17.0) cannot
# pay the 21.10 difference. Each is decided by data alone, so tau2's replay errors the same;
# for 64 and 105 (mutating calls) tau2 reports the gold replay as incomplete and leaves a
# matching DB unscored (evaluator_env.replay_golden_actions).
GOLD_ERRORS = {
    "2_1": "Product not found",
    "3_1": "Product not found",
    "4_1": "Product not found",
    "35_0": "User not found",
    "37_0": "User not found",
    "38_0": "User not found",
    "39_0": "User not found",
    "46_1": "Order not found",
    "46_2": "Order not found",
    "47_1": "Order not found",
    "47_2": "Order not found",
    "54_0": "User not found",
    "55_0": "User not found",
    "64_6": "Non-delivered order cannot be exchanged",
    "67_0": "User not found",
    "67_1": "User not found",
    "68_0": "User not found",
    "106_0": "Insufficient gift card balance to pay for the price difference",
}


# --- 1. every task's gold replay -----------------------------------------------------------


def test_gold_replay_of_every_task_errors_only_where_tau2_does_and_is_deterministic(retail, tasks):
    assert len(tasks) == 114
    base_before = json.dumps(retail.db, sort_keys=True)
    errors = {}
    for task in tasks.values():
        env, results = replayed(retail, task)
        for action, result in zip(gold(task), results):
            if result.error:
                errors[action["action_id"]] = result.content.removeprefix("Error: ")
        twin, _ = replayed(retail, task)
        assert env.db.digest() == twin.db.digest(), task["id"]
        assert env.same_state(twin) == (True, True)
        writes = [a for a, r in zip(gold(task), results) if RetailTools.tool_kinds()[a["name"]] == "write" and not r.error]
        assert bool(env.db.changes()) == bool(writes), task["id"]
        # the snapshot rebuilds the same state in a fresh environment (another process)
        assert retail.environment(json.loads(json.dumps(env.snapshot()))).same_state(env) == (True, True)
    assert errors == GOLD_ERRORS
    assert json.dumps(retail.db, sort_keys=True) == base_before, "a tool wrote into the shared base"


def test_gold_errors_follow_from_the_data_alone(retail, tasks):
    """Why tau2's own replay fails on GOLD_ERRORS too, read straight from db.json."""
    db = retail.db
    actions = {a["action_id"]: a for task in tasks.values() for a in gold(task)}
    emails = {u["email"].lower() for u in db["users"].values()}
    people = {(u["name"]["first_name"].lower(), u["name"]["last_name"].lower(), u["address"]["zip"]) for u in db["users"].values()}
    for action_id in GOLD_ERRORS:
        name, args = actions[action_id]["name"], actions[action_id]["arguments"]
        if name == "get_product_details":
            assert args["product_id"] not in db["products"]
        elif name == "get_order_details":
            assert args["order_id"] not in db["orders"]
        elif name == "find_user_id_by_email":
            assert args["email"].lower() not in emails
        elif name == "find_user_id_by_name_zip":
            assert (args["first_name"].lower(), args["last_name"].lower(), args["zip"]) not in people
        elif action_id == "64_6":
            assert db["orders"][args["order_id"]]["status"] == "pending"
        else:
            order = db["orders"][args["order_id"]]
            price = {i["item_id"]: i["price"] for i in order["items"]}
            variants = db["products"][order["items"][0]["product_id"]]["variants"]
            difference = sum(variants[new]["price"] - price[old] for old, new in zip(args["item_ids"], args["new_item_ids"]))
            card = db["users"][order["user_id"]]["payment_methods"][args["payment_method_id"]]
            assert (action_id, round(difference, 2), card["balance"]) == ("106_0", 21.1, 17.0)


def test_gold_replay_results_of_task_0(retail, tasks):
    env, results = replayed(retail, tasks["0"])
    assert results[0].content == "yusuf_rossi_9620"
    exchanged = json.loads(results[-1].content)
    keyboard, thermostat = (retail.db["products"][p]["variants"] for p in ("1656367028", "4896585277"))
    expected = round(keyboard["7706410293"]["price"] - 272.33 + thermostat["7747408585"]["price"] - 262.47, 2)
    assert exchanged["status"] == "exchange requested"
    assert exchanged["exchange_items"] == ["1151293680", "4983901480"]
    assert exchanged["exchange_new_items"] == ["7706410293", "7747408585"]
    assert exchanged["exchange_payment_method_id"] == "credit_card_9513926"
    assert exchanged["exchange_price_difference"] == expected
    assert exchanged["payment_history"] == retail.db["orders"]["#W2378156"]["payment_history"]
    assert set(env.db.changes()) == {"orders"}


# --- 2. wrong trajectories score 0 on the DB check ----------------------------------------------


def _replace(task, name, **arguments):
    """Gold actions with the first ``name`` action's arguments overridden."""
    actions = copy.deepcopy(gold(task))
    action = next(a for a in actions if a["name"] == name)
    action["arguments"].update(arguments)
    return actions


def _swap(task, name, new_name, arguments):
    actions = copy.deepcopy(gold(task))
    index = next(i for i, a in enumerate(actions) if a["name"] == name)
    actions[index] = {"name": new_name, "arguments": arguments}
    return actions


def _other_available_variant(retail, product_id, *excluded):
    return next(
        item_id for item_id, v in retail.db["products"][product_id]["variants"].items()
        if v["available"] and item_id not in excluded
    )


def _wrong_variant(retail, tasks):
    keyboard = _other_available_variant(retail, "1656367028", "7706410293", "1151293680")
    return "0", _replace(tasks["0"], "exchange_delivered_order_items", new_item_ids=[keyboard, "7747408585"])


def _user_address_instead(retail, tasks):
    address = dict(next(a for a in gold(tasks["17"]) if a["name"] == "modify_pending_order_address")["arguments"])
    del address["order_id"]
    return "17", _swap(tasks["17"], "modify_pending_order_address", "modify_user_address", {"user_id": "fatima_johnson_7581", **address})


WRONG = {
    "wrong item variant": _wrong_variant,
    "wrong payment method (items)": lambda r, t: (
        "41", _replace(t["41"], "modify_pending_order_items", payment_method_id="credit_card_9503061")),
    "wrong payment method (payment change)": lambda r, t: (
        "40", _replace(t["40"], "modify_pending_order_payment", payment_method_id="paypal_1621947")),
    "return instead of exchange": lambda r, t: ("0", _swap(t["0"], "exchange_delivered_order_items", "return_delivered_order_items", {
        "order_id": "#W2378156", "item_ids": ["1151293680", "4983901480"], "payment_method_id": "credit_card_9513926"})),
    "cancelling the wrong order": lambda r, t: ("88", _replace(t["88"], "cancel_pending_order", order_id="#W7999678")),
    "wrong cancel reason": lambda r, t: ("88", _replace(t["88"], "cancel_pending_order", reason="no longer needed")),
    "address of a delivered order": lambda r, t: ("17", _replace(t["17"], "modify_pending_order_address", order_id="#W9389413")),
    "user address instead of order address": _user_address_instead,
    "one item missing from a modification": lambda r, t: ("20", _replace(t["20"], "modify_pending_order_items",
        item_ids=["2366567022", "1340995114", "9791469541"], new_item_ids=["4579334072", "1151293680", "4107812777"])),
}


@pytest.mark.parametrize("mistake", list(WRONG))
def test_wrong_trajectory_gives_a_different_db_than_gold(retail, tasks, mistake):
    task_id, actions = WRONG[mistake](retail, tasks)
    task = tasks[task_id]
    gold_env, gold_results = replayed(retail, task)
    wrong_env, results = replayed(retail, task, actions)
    assert wrong_env.same_state(gold_env)[0] is False
    # the wrong call itself goes through (a mistake, not a refusal), except on the delivered order
    refused = ["Error: Non-pending order cannot be modified"] if mistake == "address of a delivered order" else []
    assert [r.content for r in results if r.error] == [r.content for r in gold_results if r.error] + refused


def test_gold_trajectory_with_reads_dropped_still_matches_gold(retail, tasks):
    """The DB check looks at state only: read tools never change it."""
    for task_id in ("0", "17", "41", "88"):
        task = tasks[task_id]
        writes = [a for a in gold(task) if RetailTools.tool_kinds()[a["name"]] == "write"]
        assert replayed(retail, task, writes)[0].same_state(replayed(retail, task)[0]) == (True, True)


# --- 3. tool semantics on a small store ---------------------------------------------------------


def _variant(item_id, price, available=True, **options):
    return {"item_id": item_id, "options": options, "available": available, "price": price}


def _order(order_id, status, items, payments, user_id="ann_lee_1"):
    return {
        "order_id": order_id, "user_id": user_id,
        "address": {"address1": "1 Main St", "address2": "", "city": "Austin", "country": "USA", "state": "TX", "zip": "78701"},
        "items": [{"name": name, "product_id": pid, "item_id": iid, "price": price, "options": {}} for name, pid, iid, price in items],
        "status": status, "fulfillments": [],
        "payment_history": [{"transaction_type": "payment", "amount": a, "payment_method_id": m} for a, m in payments],
    }


GLASS_KETTLE, CERAMIC_KETTLE, RED_LAMP = ("Kettle", "P1", "K1", 100.0), ("Kettle", "P1", "K2", 120.5), ("Lamp", "P2", "L1", 30.0)
SMALL_DB = {
    "products": {
        "P1": {"name": "Kettle", "product_id": "P1", "variants": {
            "K1": _variant("K1", 100.0, material="glass"), "K2": _variant("K2", 120.5, material="ceramic"),
            "K3": _variant("K3", 80.25, material="steel"), "K4": _variant("K4", 90.0, available=False, material="iron"),
            "K5": _variant("K5", 100.0, material="copper")}},
        "P2": {"name": "Lamp", "product_id": "P2", "variants": {
            "L1": _variant("L1", 30.0, color="red"), "L2": _variant("L2", 45.0, color="blue")}},
    },
    "users": {
        "ann_lee_1": {
            "user_id": "ann_lee_1", "name": {"first_name": "Ann", "last_name": "Lee"},
            "address": {"address1": "1 Main St", "address2": "", "city": "Austin", "country": "USA", "state": "TX", "zip": "78701"},
            "email": "Ann.Lee@example.com",
            "payment_methods": {
                "gift_card_1": {"source": "gift_card", "id": "gift_card_1", "balance": 50.0},
                "credit_card_1": {"source": "credit_card", "id": "credit_card_1", "brand": "visa", "last_four": "1234"},
                "paypal_1": {"source": "paypal", "id": "paypal_1"},
            },
            "orders": ["#W1", "#W2", "#W3", "#W4", "#W5", "#W6"],
        },
    },
    "orders": {
        "#W1": _order("#W1", "pending", [GLASS_KETTLE, RED_LAMP], [(130.0, "credit_card_1")]),
        "#W2": _order("#W2", "delivered", [GLASS_KETTLE, GLASS_KETTLE], [(200.0, "credit_card_1")]),
        "#W3": _order("#W3", "processed", [RED_LAMP], [(30.0, "paypal_1")]),
        "#W4": _order("#W4", "pending", [RED_LAMP], [(30.0, "gift_card_1")]),
        "#W5": _order("#W5", "pending", [GLASS_KETTLE, GLASS_KETTLE], [(200.0, "paypal_1")]),
        "#W6": _order("#W6", "pending", [GLASS_KETTLE, CERAMIC_KETTLE], [(220.5, "paypal_1")]),
    },
}


PRISTINE_SMALL_DB = copy.deepcopy(SMALL_DB)


@pytest.fixture
def small():
    store = Domain(name="retail", assistant_tools=RetailTools, load_db=lambda: SMALL_DB, policy=lambda: "")
    yield store.environment()
    assert SMALL_DB == PRISTINE_SMALL_DB, "a tool wrote into the shared base"


def call(env, name, **arguments):
    result = env.call_tool("assistant", name, arguments)
    return result.content if result.error else json.loads(result.content) if result.content[:1] in "{[" else result.content


def balance(env):
    return env.db.get("users", "ann_lee_1")["payment_methods"]["gift_card_1"]["balance"]


def test_tool_names_and_arguments_are_tau2s():
    expected = {
        "calculate": ["expression"],
        "cancel_pending_order": ["order_id", "reason"],
        "exchange_delivered_order_items": ["order_id", "item_ids", "new_item_ids", "payment_method_id"],
        "find_user_id_by_email": ["email"],
        "find_user_id_by_name_zip": ["first_name", "last_name", "zip"],
        "get_item_details": ["item_id"],
        "get_order_details": ["order_id"],
        "get_product_details": ["product_id"],
        "get_user_details": ["user_id"],
        "list_all_product_types": [],
        "modify_pending_order_address": ["order_id", "address1", "address2", "city", "state", "country", "zip"],
        "modify_pending_order_items": ["order_id", "item_ids", "new_item_ids", "payment_method_id"],
        "modify_pending_order_payment": ["order_id", "payment_method_id"],
        "modify_user_address": ["user_id", "address1", "address2", "city", "state", "country", "zip"],
        "return_delivered_order_items": ["order_id", "item_ids", "payment_method_id"],
        "transfer_to_human_agents": ["summary"],
    }
    schemas = {s["function"]["name"]: s["function"] for s in RetailTools.schemas()}
    assert {name: list(s["parameters"]["properties"]) for name, s in schemas.items()} == expected
    for name, schema in schemas.items():
        assert schema["description"], name
        assert schema["parameters"].get("required", []) == expected[name]
        for arg, prop in schema["parameters"]["properties"].items():
            assert prop.get("description"), (name, arg)
    assert schemas["modify_pending_order_items"]["parameters"]["properties"]["item_ids"]["type"] == "array"
    kinds = RetailTools.tool_kinds()
    assert {n for n, k in kinds.items() if k == "write"} == {
        "cancel_pending_order", "exchange_delivered_order_items", "modify_pending_order_address",
        "modify_pending_order_items", "modify_pending_order_payment", "modify_user_address", "return_delivered_order_items"}
    assert kinds["calculate"] == kinds["transfer_to_human_agents"] == "generic"


def test_domain_loads_policy_and_the_three_tables():
    store = retail_domain()
    assert store.name == "retail" and "retail agent policy" in store.policy().lower()
    assert {t: len(rows) for t, rows in store.db.items()} == {"products": 50, "users": 500, "orders": 1000}


def test_lookups_lower_case_as_tau2_and_lenient_lookups_fold_blanks_and_accents(small):
    assert call(small, "find_user_id_by_email", email="ann.lee@EXAMPLE.com") == "ann_lee_1"  # tau2: str.lower()
    assert call(small, "find_user_id_by_email", email=" Ánn.Lee@example.com") == "Error: User not found"
    assert call(small, "find_user_id_by_name_zip", first_name="Ánn", last_name="LÉE", zip="78701") == "Error: User not found"
    small.behaviour = Behaviour(lenient_lookups=True)
    assert call(small, "find_user_id_by_email", email=" Ánn.Lee@example.com") == "ann_lee_1"
    assert call(small, "find_user_id_by_name_zip", first_name="Ánn", last_name="LÉE", zip="78701") == "ann_lee_1"
    small.behaviour = Behaviour()


def test_lookups_and_unknown_ids(small):
    assert call(small, "find_user_id_by_email", email="ann.lee@EXAMPLE.com") == "ann_lee_1"
    assert call(small, "find_user_id_by_name_zip", first_name="Ann", last_name="Lee", zip=" 78701") == "Error: User not found"
    assert call(small, "find_user_id_by_email", email="bob@example.com") == "Error: User not found"
    assert call(small, "find_user_id_by_name_zip", first_name="ANN", last_name="lee", zip="78701") == "ann_lee_1"
    assert call(small, "find_user_id_by_name_zip", first_name="Ann", last_name="Lee", zip="78702") == "Error: User not found"
    assert call(small, "get_user_details", user_id="nobody") == "Error: User not found"
    assert call(small, "get_order_details", order_id="W1") == "Error: Order not found"
    assert call(small, "get_product_details", product_id="K1") == "Error: Product not found"
    assert call(small, "get_item_details", item_id="P1") == "Error: Item not found"
    assert call(small, "get_item_details", item_id="K2") == SMALL_DB["products"]["P1"]["variants"]["K2"]
    assert call(small, "get_product_details", product_id="P2") == SMALL_DB["products"]["P2"]
    assert call(small, "get_user_details", user_id="ann_lee_1") == SMALL_DB["users"]["ann_lee_1"]
    assert small.call_tool("assistant", "list_all_product_types", {}).content == '{"Kettle": "P1", "Lamp": "P2"}'
    assert call(small, "transfer_to_human_agents", summary="wants a manager") == "Transfer successful"
    assert call(small, "modify_user_address", user_id="nobody", address1="a", address2="", city="c",
                state="s", country="USA", zip="1") == "Error: User not found"
    assert call(small, "modify_pending_order_payment", order_id="#W1", payment_method_id="gift_card_9") == "Error: Payment method not found"
    assert small.db.changes() == {}


def test_order_results_carry_tau2s_optional_fields(small):
    order = call(small, "get_order_details", order_id="#W1")
    assert list(order) == [
        "order_id", "user_id", "address", "items", "status", "fulfillments", "payment_history", "cancel_reason",
        "exchange_items", "exchange_new_items", "exchange_payment_method_id", "exchange_price_difference",
        "return_items", "return_payment_method_id"]
    assert order["cancel_reason"] is None and order["return_items"] is None
    assert small.db.changes() == {}  # the view adds nothing to the state


def test_modify_items_pays_the_difference_from_a_gift_card(small):
    order = call(small, "modify_pending_order_items", order_id="#W1", item_ids=["K1"], new_item_ids=["K2"], payment_method_id="gift_card_1")
    assert order["status"] == "pending (item modified)"
    assert order["items"][0] == {"name": "Kettle", "product_id": "P1", "item_id": "K2", "price": 120.5, "options": {"material": "ceramic"}}
    assert order["payment_history"][-1] == {"transaction_type": "payment", "amount": 20.5, "payment_method_id": "gift_card_1"}
    assert balance(small) == 29.5
    # only once per order; the address may still change, the payment may not
    assert call(small, "modify_pending_order_items", order_id="#W1", item_ids=["L1"], new_item_ids=["L2"],
                payment_method_id="gift_card_1") == "Error: Non-pending order cannot be modified"
    assert call(small, "modify_pending_order_payment", order_id="#W1", payment_method_id="paypal_1") == \
        "Error: There should be exactly one payment for a pending order"
    moved = call(small, "modify_pending_order_address", order_id="#W1", address1="9 Oak Ave", address2="Apt 2",
                 city="Dallas", state="TX", country="USA", zip="75001")
    assert moved["address"] == {"address1": "9 Oak Ave", "address2": "Apt 2", "city": "Dallas", "country": "USA", "state": "TX", "zip": "75001"}
    assert SMALL_DB["orders"]["#W1"]["status"] == "pending" and SMALL_DB["orders"]["#W1"]["items"][0]["item_id"] == "K1"


def test_modify_items_refunds_a_cheaper_item_to_the_gift_card(small):
    order = call(small, "modify_pending_order_items", order_id="#W1", item_ids=["K1"], new_item_ids=["K3"], payment_method_id="gift_card_1")
    assert order["payment_history"][-1] == {"transaction_type": "refund", "amount": 19.75, "payment_method_id": "gift_card_1"}
    assert balance(small) == 69.75


def test_modify_items_with_a_credit_card_only_records_the_payment(small):
    order = call(small, "modify_pending_order_items", order_id="#W1", item_ids=["K1", "L1"], new_item_ids=["K2", "L2"],
                 payment_method_id="credit_card_1")
    assert order["payment_history"][-1] == {"transaction_type": "payment", "amount": 35.5, "payment_method_id": "credit_card_1"}
    assert order["status"] == "pending (item modified)" and balance(small) == 50.0
    # tau2 (issues #317/#318): every rewritten item takes the last new item's price and options
    assert [(i["name"], i["item_id"], i["price"], i["options"]) for i in order["items"]] == [
        ("Kettle", "K2", 45.0, {"color": "blue"}), ("Lamp", "L2", 45.0, {"color": "blue"})]


class _OwnVariantTools(RetailTools):
    reuse_last_variant = False


def test_modify_items_can_give_each_item_its_own_variant():
    store = Domain(name="retail", assistant_tools=_OwnVariantTools, load_db=lambda: SMALL_DB, policy=lambda: "")
    order = call(store.environment(), "modify_pending_order_items", order_id="#W1", item_ids=["K1", "L1"],
                 new_item_ids=["K2", "L2"], payment_method_id="credit_card_1")
    assert [(i["item_id"], i["price"], i["options"]) for i in order["items"]] == [
        ("K2", 120.5, {"material": "ceramic"}), ("L2", 45.0, {"color": "blue"})]


def test_modify_items_rewrites_items_one_at_a_time_like_tau2(small):
    twins = call(small, "modify_pending_order_items", order_id="#W5", item_ids=["K1", "K1"], new_item_ids=["K2", "K3"],
                 payment_method_id="paypal_1")
    assert [(i["item_id"], i["price"]) for i in twins["items"]] == [("K2", 80.25), ("K3", 80.25)]
    assert twins["payment_history"][-1] == {"transaction_type": "payment", "amount": 0.75, "payment_method_id": "paypal_1"}
    # K1 -> K2 first, then "the first K2" is the item that just became one
    chained = call(small, "modify_pending_order_items", order_id="#W6", item_ids=["K1", "K2"], new_item_ids=["K2", "K3"],
                   payment_method_id="paypal_1")
    assert [i["item_id"] for i in chained["items"]] == ["K3", "K2"]
    assert chained["payment_history"][-1] == {"transaction_type": "refund", "amount": 19.75, "payment_method_id": "paypal_1"}


def test_modify_items_order_of_pairs_matters_to_the_db_check(retail, tasks):
    """Listing task 100's pairs in the other order fails tau2's DB check (tau2-bench issue #325)."""
    task = tasks["100"]
    swapped = _replace(task, "modify_pending_order_items", item_ids=["5312063289", "8926329222"],
                       new_item_ids=["6956751343", "7160999700"], payment_method_id="credit_card_3261838")
    assert replayed(retail, task, swapped)[0].same_state(replayed(retail, task)[0])[0] is False


def test_modify_items_refusals_leave_the_state_unchanged(small):
    # K1 -> K2 and L1 -> L2 cost 35.5: one cent more than the card holds
    small.db.edit("users", "ann_lee_1")["payment_methods"]["gift_card_1"]["balance"] = 35.49
    before = small.db.digest()
    for arguments, message in [
        ({"item_ids": ["K1", "L1"], "new_item_ids": ["K2", "L2"], "payment_method_id": "gift_card_1"},
         "Insufficient gift card balance to pay for the new item"),
        ({"item_ids": ["K1"], "new_item_ids": ["K4"], "payment_method_id": "paypal_1"}, "New item K4 not found or available"),
        ({"item_ids": ["K1"], "new_item_ids": ["L2"], "payment_method_id": "paypal_1"}, "Variant not found"),
        ({"item_ids": ["K1"], "new_item_ids": ["K1"], "payment_method_id": "paypal_1"}, "The new item id should be different from the old item id"),
        ({"item_ids": ["K1", "K1"], "new_item_ids": ["K2", "K3"], "payment_method_id": "paypal_1"}, "K1 not found"),
        ({"item_ids": ["K1"], "new_item_ids": ["K2", "K3"], "payment_method_id": "paypal_1"}, "The number of items to be exchanged should match"),
        ({"item_ids": ["K1"], "new_item_ids": ["K2"], "payment_method_id": "paypal_9"}, "Payment method not found"),
    ]:
        assert call(small, "modify_pending_order_items", order_id="#W1", **arguments) == f"Error: {message}"
    assert call(small, "modify_pending_order_items", order_id="#W2", item_ids=["K1"], new_item_ids=["K2"],
                payment_method_id="paypal_1") == "Error: Non-pending order cannot be modified"
    assert small.db.digest() == before


def test_gift_card_balances_are_rounded_to_cents(small):
    small.db.edit("users", "ann_lee_1")["payment_methods"]["gift_card_1"]["balance"] = 4.77
    assert 4.77 + 30.0 != 34.77  # the float sum needs the rounding
    call(small, "cancel_pending_order", order_id="#W4", reason="no longer needed")
    assert balance(small) == 34.77


def test_modify_items_at_equal_price_records_a_zero_refund(small):
    order = call(small, "modify_pending_order_items", order_id="#W1", item_ids=["K1"], new_item_ids=["K5"], payment_method_id="gift_card_1")
    assert order["payment_history"][-1] == {"transaction_type": "refund", "amount": 0.0, "payment_method_id": "gift_card_1"}
    assert balance(small) == 50.0


def test_cancel_refunds_gift_cards_at_once_and_only_pending_orders(small):
    assert call(small, "cancel_pending_order", order_id="#W4", reason="changed my mind") == "Error: Invalid reason"
    order = call(small, "cancel_pending_order", order_id="#W4", reason="no longer needed")
    assert order["status"] == "cancelled" and order["cancel_reason"] == "no longer needed"
    assert order["payment_history"][-1] == {"transaction_type": "refund", "amount": 30.0, "payment_method_id": "gift_card_1"}
    assert balance(small) == 80.0
    assert call(small, "cancel_pending_order", order_id="#W4", reason="no longer needed") == "Error: Non-pending order cannot be cancelled"
    for order_id in ("#W2", "#W3"):
        assert call(small, "cancel_pending_order", order_id=order_id, reason="no longer needed") == "Error: Non-pending order cannot be cancelled"
    credit = call(small, "cancel_pending_order", order_id="#W1", reason="ordered by mistake")
    assert credit["payment_history"][-1]["payment_method_id"] == "credit_card_1" and balance(small) == 80.0


def test_payment_change_moves_money_between_gift_card_and_other_methods(small):
    assert call(small, "modify_pending_order_payment", order_id="#W1", payment_method_id="gift_card_1") == \
        "Error: Insufficient gift card balance to pay for the order"
    assert call(small, "modify_pending_order_payment", order_id="#W1", payment_method_id="credit_card_1") == \
        "Error: The new payment method should be different from the current one"
    assert call(small, "modify_pending_order_payment", order_id="#W2", payment_method_id="paypal_1") == \
        "Error: Non-pending order cannot be modified"
    order = call(small, "modify_pending_order_payment", order_id="#W4", payment_method_id="paypal_1")
    assert order["payment_history"] == [
        {"transaction_type": "payment", "amount": 30.0, "payment_method_id": "gift_card_1"},
        {"transaction_type": "payment", "amount": 30.0, "payment_method_id": "paypal_1"},
        {"transaction_type": "refund", "amount": 30.0, "payment_method_id": "gift_card_1"},
    ]
    assert order["status"] == "pending" and balance(small) == 80.0
    # tau2 refunds every history entry on cancel, the refund entry included
    cancelled = call(small, "cancel_pending_order", order_id="#W4", reason="no longer needed")
    assert [p["payment_method_id"] for p in cancelled["payment_history"][3:]] == ["gift_card_1", "paypal_1", "gift_card_1"]
    assert balance(small) == 140.0


def test_exchange_records_the_rounded_difference_without_charging(small):
    assert call(small, "exchange_delivered_order_items", order_id="#W1", item_ids=["K1"], new_item_ids=["K2"],
                payment_method_id="paypal_1") == "Error: Non-delivered order cannot be exchanged"
    assert call(small, "exchange_delivered_order_items", order_id="#W2", item_ids=["K1", "K1", "K1"],
                new_item_ids=["K2", "K2", "K2"], payment_method_id="paypal_1") == "Error: Number of K1 not found."
    assert call(small, "exchange_delivered_order_items", order_id="#W2", item_ids=["K1"], new_item_ids=[],
                payment_method_id="paypal_1") == "Error: The number of items to be exchanged should match."
    assert call(small, "exchange_delivered_order_items", order_id="#W2", item_ids=["K1"], new_item_ids=["K4"],
                payment_method_id="paypal_1") == "Error: New item K4 not found or available"
    small.db.edit("users", "ann_lee_1")["payment_methods"]["gift_card_1"]["balance"] = 20.0
    assert call(small, "exchange_delivered_order_items", order_id="#W2", item_ids=["K1", "K1"], new_item_ids=["K2", "K2"],
                payment_method_id="gift_card_1") == "Error: Insufficient gift card balance to pay for the price difference"
    order = call(small, "exchange_delivered_order_items", order_id="#W2", item_ids=["K1", "K1"], new_item_ids=["K3", "K2"],
                 payment_method_id="gift_card_1")
    assert order["status"] == "exchange requested"
    assert order["exchange_items"] == ["K1", "K1"] and order["exchange_new_items"] == ["K2", "K3"]
    assert order["exchange_price_difference"] == 0.75 and order["exchange_payment_method_id"] == "gift_card_1"
    assert order["payment_history"] == SMALL_DB["orders"]["#W2"]["payment_history"] and balance(small) == 20.0
    assert [i["item_id"] for i in order["items"]] == ["K1", "K1"]  # items change when the exchange is fulfilled
    assert call(small, "return_delivered_order_items", order_id="#W2", item_ids=["K1"],
                payment_method_id="credit_card_1") == "Error: Non-delivered order cannot be returned"


def test_return_goes_to_the_original_method_or_a_gift_card(small):
    assert call(small, "return_delivered_order_items", order_id="#W2", item_ids=["K1"], payment_method_id="paypal_1") == \
        "Error: Payment method should be the original payment method"
    assert call(small, "return_delivered_order_items", order_id="#W2", item_ids=["K2"], payment_method_id="credit_card_1") == \
        "Error: Some item not found"
    assert call(small, "return_delivered_order_items", order_id="#W3", item_ids=["L1"], payment_method_id="paypal_1") == \
        "Error: Non-delivered order cannot be returned"
    order = call(small, "return_delivered_order_items", order_id="#W2", item_ids=["K1", "K1"], payment_method_id="gift_card_1")
    assert order["status"] == "return requested"
    assert order["return_items"] == ["K1", "K1"] and order["return_payment_method_id"] == "gift_card_1"
    assert balance(small) == 50.0  # the refund waits for the items to come back


def test_user_address_change_and_snapshot_round_trip(small):
    user = call(small, "modify_user_address", user_id="ann_lee_1", address1="5 Elm St", address2="", city="Waco",
                state="TX", country="USA", zip="76701")
    assert user["address"] == {"address1": "5 Elm St", "address2": "", "city": "Waco", "country": "USA", "state": "TX", "zip": "76701"}
    assert call(small, "find_user_id_by_name_zip", first_name="Ann", last_name="Lee", zip="76701") == "ann_lee_1"
    assert set(small.snapshot()["db"]) == {"users"}
    again = small.domain.environment(json.loads(json.dumps(small.snapshot())))
    assert again.same_state(small) == (True, True)
    assert SMALL_DB["users"]["ann_lee_1"]["address"]["zip"] == "78701"


@pytest.mark.parametrize("expression, expected", [
    ("2 + 2", "4.0"), ("(1 + 2) * 3 / 4", "2.25"), ("10 / 3", "3.33"), ("-5.5 + 2", "-3.5"),
    (" 272.33 - 262.47", "9.86"), ("7 // 2", "3.0"), ("2 ** 10", "1024.0"),
    ("1 / 0", "Error: division by zero"), ("2 + a", "Error: Invalid characters in expression"),
    ("__import__('os')", "Error: Invalid characters in expression"), ("()", "Error: Invalid expression"),
    ("9 ** 9 ** 9", "Error: Exponent too large"),
])
def test_calculate(small, expression, expected):
    assert small.call_tool("assistant", "calculate", {"expression": expression}).content == expected


def test_calculate_syntax_error_reads_like_pythons(small):
    assert small.call_tool("assistant", "calculate", {"expression": "2 +"}).content.startswith("Error: invalid syntax")


def test_bad_tool_calls_become_error_results(small):
    assert call(small, "get_order_details", order="#W1").startswith("Error:")
    assert call(small, "modify_pending_order_items", order_id="#W1", item_ids="K1", new_item_ids=["K2"],
                payment_method_id="paypal_1").startswith("Error:")
    assert small.call_tool("assistant", "book_flight", {}).content == "Error: Tool 'book_flight' not found."
    assert small.db.changes() == {}


# --- 4. the delta each task carries -----------------------------------------------------------


def test_snapshot_after_gold_replay_is_a_small_fraction_of_the_db(retail, tasks):
    db_bytes = len(json.dumps(retail.db))
    sizes = [len(json.dumps(replayed(retail, task)[0].snapshot())) for task in tasks.values()]
    mean, largest = sum(sizes) / len(sizes), max(sizes)
    print(f"retail snapshot bytes: mean {mean:.0f}, max {largest}, whole db {db_bytes}")
    assert largest < db_bytes / 200, (largest, db_bytes)
    assert mean < 3000
