"""tau2 telecom: agent tools, the user's phone (dual control), sync, and every task's gold replay."""
import copy
import json
import statistics

import pytest

from matrix_plugin_tau2.domains import telecom
from matrix_plugin_tau2.env import get_domain
from matrix_plugin_tau2.versions import Behaviour

DOMAIN = get_domain("telecom")
JOHN = {"name": "John Smith", "phone_number": "555-123-2002"}  # customer C1001, line L1002 (Premium, roaming on)

AGENT_TOOLS = {
    "get_customer_by_phone", "get_customer_by_id", "get_customer_by_name", "get_details_by_id", "suspend_line",
    "resume_line", "get_bills_for_customer", "send_payment_request", "get_data_usage", "enable_roaming",
    "disable_roaming", "refuel_data", "transfer_to_human_agents",
}
USER_TOOLS = {
    "check_status_bar", "check_network_status", "check_network_mode_preference", "set_network_mode_preference",
    "run_speed_test", "toggle_airplane_mode", "check_sim_status", "reseat_sim_card", "toggle_data", "toggle_roaming",
    "check_data_restriction_status", "toggle_data_saver_mode", "check_apn_settings", "set_apn_settings",
    "reset_apn_settings", "check_wifi_status", "toggle_wifi", "check_wifi_calling_status", "toggle_wifi_calling",
    "check_vpn_status", "connect_vpn", "disconnect_vpn", "check_installed_apps", "check_app_status",
    "check_app_permissions", "grant_app_permission", "can_send_mms", "reboot_device", "check_payment_request",
    "make_payment",
}


def _fresh(user_info=JOHN):
    env = DOMAIN.environment()
    if user_info:
        env.run_function("user", "set_user_info", user_info)
    return env


def _task_env(task):
    env = DOMAIN.environment()
    env.apply_initial_state(task["initial_state"])
    return env


def _assertions(env, task):
    """tau2's ENV_ASSERTION check: each assertion's result compared with its assert_value."""
    return [
        env.run_function(a["env_type"], a["func_name"], a.get("arguments") or {}) == a.get("assert_value", True)
        for a in task["evaluation_criteria"]["env_assertions"]
    ]


def _ok(result):
    assert not result.error, result.content
    return result.content


def _call(env, side, name, **args):
    return _ok(env.call_tool(side, name, args))


def _task(task_id):
    return next(t for t in telecom.load_tasks() if t["id"] == task_id)


# --- every task -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant,count", [("tasks", 2285), ("tasks_base", 114)])
def test_every_task_gold_actions_replay_cleanly_and_satisfy_env_assertions(variant, count):
    tasks = telecom.load_tasks(variant)
    assert len(tasks) == count
    failures = []
    for task in tasks:
        actions = task["evaluation_criteria"]["actions"]
        env = _task_env(task)
        results = env.replay(actions)
        errors = [(a["name"], r.content) for a, r in zip(actions, results) if r.error]
        checks = _assertions(env, task)
        again = _task_env(task)
        again.replay(actions)
        if errors or not all(checks) or env.same_state(again) != (True, True):
            failures.append((task["id"], errors, checks))
        assert env.db.digest() == again.db.digest() and env.user_state.digest() == again.user_state.digest()
    assert not failures, f"{len(failures)} tasks fail, e.g. {failures[:3]}"


def test_the_problem_is_real_before_the_gold_actions():
    fixable = unfixable = 0
    for task in telecom.load_tasks():
        checks = _assertions(_task_env(task), task)
        if "ACTION" in task["evaluation_criteria"]["reward_basis"]:
            # Unfixable by the agent (locked SIM, ended contract): the reward is the transfer
            # itself, and the state the assertions describe (no service) is already there.
            unfixable += 1
            assert all(checks), task["id"]
            assert [a["name"] for a in task["evaluation_criteria"]["actions"]] == ["transfer_to_human_agents"]
        else:
            fixable += 1
            assert not all(checks), f"{task['id']}: every assertion holds before the fix"
    assert fixable == 2253 and unfixable == 32


def test_snapshot_size_after_replay_is_small_and_restores_the_same_state():
    sizes = []
    for task in telecom.load_tasks():
        env = _task_env(task)
        env.replay(task["evaluation_criteria"]["actions"])
        snap = json.loads(json.dumps(env.snapshot()))
        sizes.append(len(json.dumps(snap)))
        if len(sizes) % 97 == 0:  # restoring is cheap but not free: a spread sample
            assert env.same_state(DOMAIN.environment(snap)) == (True, True)
    print(f"telecom snapshot JSON bytes after gold replay: mean {statistics.mean(sizes):.0f}, max {max(sizes)}")
    assert max(sizes) < 4096


# --- wrong trajectories -----------------------------------------------------------------------

OVERDUE = "[service_issue]overdue_bill_suspension[PERSONA:Easy]"
MMS = "[mms_issue]break_app_both_permissions[PERSONA:Hard]"


def _replay_variant(task, actions):
    env = _task_env(task)
    results = env.replay(actions)
    return env, results, _assertions(env, task)


def _gold(task):
    env = _task_env(task)
    env.replay(task["evaluation_criteria"]["actions"])
    return env


def test_order_matters_reboot_before_resume_leaves_no_service():
    task = _task(OVERDUE)
    gold = task["evaluation_criteria"]["actions"]
    assert [a["name"] for a in gold] == ["send_payment_request", "make_payment", "resume_line", "reboot_device"]
    env, results, checks = _replay_variant(task, [gold[0], gold[1], gold[3], gold[2]])
    assert not any(r.error for r in results)
    assert checks == [False, True]  # line resumed and bill paid, but the phone never re-attached
    assert env.same_state(_gold(task)) == (True, False)


def test_order_matters_paying_before_the_request_does_nothing():
    task = _task(OVERDUE)
    gold = task["evaluation_criteria"]["actions"]
    env, results, checks = _replay_variant(task, [gold[1], gold[0], gold[2], gold[3]])
    assert results[0].content == "You do not have a payment request."
    assert checks == [True, False]
    assert env.db.get("bills", "B1234321")["status"] == "Awaiting Payment"
    assert env.same_state(_gold(task))[0] is False


def test_agent_suspending_instead_of_resuming_fails():
    task = _task(OVERDUE)
    gold = copy.deepcopy(task["evaluation_criteria"]["actions"])
    gold[2] = {"name": "suspend_line", "requestor": "assistant",
               "arguments": {"customer_id": "C1001", "line_id": "L1002", "reason": "customer request"}}
    env, results, checks = _replay_variant(task, gold)
    assert results[2].content == "Error: Line must be active to suspend"
    assert checks == [False, True]
    assert env.db.get("lines", "L1002")["status"] == "Suspended"


def test_missing_step_leaves_mms_broken():
    task = _task(MMS)
    gold = task["evaluation_criteria"]["actions"]
    assert sorted(a["arguments"]["permission"] for a in gold) == ["sms", "storage"]
    for dropped in range(len(gold)):
        _, _, checks = _replay_variant(task, gold[:dropped] + gold[dropped + 1:])
        assert checks == [False]


def test_missing_reboot_after_apn_reset_leaves_mms_broken():
    task = next(t for t in telecom.load_tasks() if [a["name"] for a in t["evaluation_criteria"]["actions"]]
                == ["reset_apn_settings", "reboot_device"])
    _, _, checks = _replay_variant(task, task["evaluation_criteria"]["actions"][:1])
    assert not all(checks)


def test_toggling_the_wrong_setting_fails_and_differs_from_gold():
    task = _task("[mobile_data_issue]user_abroad_roaming_enabled_off[PERSONA:None]")
    assert [a["name"] for a in task["evaluation_criteria"]["actions"]] == ["toggle_roaming"]
    for wrong in ("toggle_data", "toggle_data_saver_mode", "toggle_airplane_mode", "toggle_wifi"):
        env, results, checks = _replay_variant(task, [{"name": wrong, "requestor": "user", "arguments": {}}])
        assert not results[0].error
        assert not all(checks), wrong
        assert env.same_state(_gold(task))[1] is False


def test_refuelling_the_wrong_amount_fails():
    task = next(t for t in telecom.load_tasks() if [a["name"] for a in t["evaluation_criteria"]["actions"]] == ["refuel_data"])
    action = copy.deepcopy(task["evaluation_criteria"]["actions"][0])
    action["arguments"]["gb_amount"] = 1.0
    env, _, checks = _replay_variant(task, [action])
    assert checks[-1] is False  # assert_data_refueling_amount
    assert env.same_state(_gold(task))[0] is False


# --- device physics -------------------------------------------------------------------------


def test_airplane_mode_kills_service_and_radios():
    env = _fresh()
    user = env.user
    assert user.assert_service_status("connected") and user.assert_mobile_data_status(True)
    env.run_function("user", "break_vpn")
    out = _call(env, "user", "toggle_airplane_mode")
    assert out.startswith("Airplane Mode is now ON.\nStatus Bar: ✈️ Airplane Mode")
    assert user.assert_service_status("no_service") and user.assert_mobile_data_status(False)
    assert not user._dev("vpn_connected") and user._dev("vpn_details") is None
    assert _call(env, "user", "toggle_wifi").startswith("Cannot change Wi-Fi settings while Airplane Mode is ON.")
    assert _call(env, "user", "run_speed_test") == "Speed test failed: No Connection."
    _call(env, "user", "toggle_airplane_mode")
    assert user.assert_service_status("connected")
    assert _call(env, "user", "check_status_bar") == "Status Bar: 📶⁴ Excellent | 5G | 📱 Data Enabled | 🔋 80%"
    # The factory phone shows 5G at "good"; any network search finds the surroundings' excellent 5G.
    assert env.user_state.changes()["device"] == {"network_signal_strength": "excellent"}


def test_roaming_abroad_needs_both_the_phone_setting_and_the_line():
    env = _fresh()
    user = env.user
    env.run_function("user", "set_user_location", {"abroad": True})
    assert user.assert_mobile_data_status(False)  # phone's data roaming is off
    _call(env, "user", "toggle_roaming")
    assert user.assert_mobile_data_status(True)
    assert _call(env, "assistant", "disable_roaming", customer_id="C1001", line_id="L1002") == "Roaming disabled successfully"
    assert user._env("roaming_allowed") is False and user.assert_mobile_data_status(False)
    assert _call(env, "assistant", "disable_roaming", customer_id="C1001", line_id="L1002") == "Roaming was already disabled"
    assert _call(env, "assistant", "enable_roaming", customer_id="C1001", line_id="L1002") == "Roaming enabled successfully"
    assert user.assert_mobile_data_status(True) and user.assert_internet_speed(200, "excellent")
    env.run_function("user", "set_user_location", {"abroad": False})
    _call(env, "user", "toggle_roaming")
    assert user.assert_mobile_data_status(True)  # at home roaming settings do not matter


def test_apn_break_reset_takes_effect_at_reboot():
    env = _fresh()
    user = env.user
    env.run_function("user", "break_apn_settings")
    assert user.assert_service_status("no_service")
    assert _call(env, "user", "check_apn_settings").startswith("Current APN Name: broken\n")
    assert _call(env, "user", "reset_apn_settings").startswith("APN settings will reset at reboot.\nStatus Bar: 📵 No Signal")
    assert user.assert_service_status("no_service")
    assert _call(env, "user", "reboot_device").startswith("Resetting APN settings...\nRestarting network services...")
    assert user.assert_service_status("connected") and user.assert_can_send_mms(True)
    assert env.user_state.changes()["device"] == {"network_signal_strength": "excellent"}  # APN back to defaults


def test_set_apn_settings_validates_and_fills_defaults():
    env = _fresh()
    out = _call(env, "user", "set_apn_settings", apn_settings={"apn_name": "internet", "mmsc_url": None})
    assert out.startswith("APN settings set to: internet")
    assert env.user.assert_can_send_mms(False)
    bad = env.call_tool("user", "set_apn_settings", {"apn_settings": {"apn_name": "nonsense"}})
    assert bad.error and bad.content.startswith("Error:")


@pytest.mark.parametrize("setup,speed,desc", [
    ([], 220.0, "Excellent"),  # factory phone: 5G at "good" signal
    ([("simulate_network_search", {})], 275.0, "Excellent"),
    ([("set_network_mode_preference", {"mode": "4g_only"})], 44.0, "Good"),
    ([("set_network_mode_preference", {"mode": "4g_only"}), ("turn_data_saver_mode_on", {})], 8.8, "Fair"),
    ([("set_network_mode_preference", {"mode": "3g_only"})], 1.5, "Poor"),
    ([("set_network_mode_preference", {"mode": "2g_only"})], 0.05, "Very Poor"),
    ([("simulate_network_search", {}), ("break_vpn", {})], 27.5, "Good"),
    ([("break_vpn", {})], 22.0, "Fair"),
    ([("simulate_network_search", {}), ("turn_data_saver_mode_on", {})], 55.0, "Good"),
])
def test_speed_test_categories(setup, speed, desc):
    env = _fresh()
    for name, args in setup:
        env.run_function("user", name, args)
    assert _call(env, "user", "run_speed_test").startswith(f"Speed Test Result: {speed:.2f} Mbps ({desc}).")
    assert env.user.assert_internet_speed(speed, desc.lower())
    assert env.user.assert_internet_not_excellent() is (desc != "Excellent")


def test_mms_needs_data_3g_permissions_and_no_mms_over_wifi_calling():
    env = _fresh()
    user = env.user
    assert _call(env, "user", "can_send_mms") == "Your messaging app can send MMS messages."
    env.run_function("user", "set_network_mode_preference", {"mode": "2g_only"})
    assert user.assert_can_send_mms(False)
    env.run_function("user", "set_network_mode_preference", {"mode": "3g_only"})
    assert user.assert_can_send_mms(True)
    env.run_function("user", "set_wifi_calling", {"enabled": True, "mms_over_wifi": True})
    assert user.assert_can_send_mms(False)
    _call(env, "user", "toggle_wifi_calling")
    assert user.assert_can_send_mms(True)
    assert env.run_function("user", "remove_app_permission", {"app_name": "messaging", "permission": "storage"})[0]
    assert _call(env, "user", "check_app_permissions", app_name="messaging") == "App 'messaging' has permission for: sms, phone."
    assert user.assert_can_send_mms(False)
    out = _call(env, "user", "grant_app_permission", app_name="messaging", permission="camera")
    assert out.startswith("Error. Permission 'camera' not tracked for app 'messaging', available permissions:")
    assert _call(env, "user", "grant_app_permission", app_name="messaging", permission="STORAGE").startswith(
        "Success. Permission 'storage' granted to app 'messaging'.")
    assert user.assert_can_send_mms(True)


def test_sim_faults():
    env = _fresh()
    env.run_function("user", "unseat_sim_card")
    assert _call(env, "user", "check_sim_status") == "No SIM card detected in the phone."
    assert env.user.assert_service_status("no_service")
    _call(env, "user", "reseat_sim_card")
    assert env.user.assert_service_status("connected")
    env.run_function("user", "lock_sim_card", {"mode": "pin"})
    _call(env, "user", "reseat_sim_card")
    _call(env, "user", "reboot_device")
    assert env.user.assert_service_status("no_service")  # a locked SIM needs a human


def test_data_allowance_exceeded_then_refuel_restores_data():
    env = _fresh()
    env.run_function("assistant", "set_data_usage", {"customer_id": "C1001", "line_id": "L1002", "data_used_gb": 15.0})
    assert env.user.assert_mobile_data_usage_exceeded(True) and env.user.assert_mobile_data_status(False)
    # tau2's text: the amount as given ("2 GB"), the dict's numbers as strings
    out = _call(env, "assistant", "refuel_data", customer_id="C1001", line_id="L1002", gb_amount=2)
    assert out == '{"message": "Successfully added 2 GB of data for line L1002 for $4.00", "new_data_refueling_gb": "2.0", "charge": "4.0"}'
    assert env.user.assert_mobile_data_usage_exceeded(False) and env.user.assert_mobile_data_status(True)
    usage = json.loads(_call(env, "assistant", "get_data_usage", customer_id="C1001", line_id="L1002"))
    assert usage == {"line_id": "L1002", "data_used_gb": "15.0", "data_limit_gb": "15.0", "data_refueling_gb": "2.0", "cycle_end_date": "2025-02-28"}
    draft = env.db.get("bills", "B1003")
    assert draft["total_due"] == 4.0
    assert draft["line_items"] == [{"description": "Data refueling: 2 GB at $2.0/GB", "amount": 4.0, "date": "2025-02-25", "item_type": "Charge"}]
    # with argument validation (an option) the int becomes 2.0: "2.0 GB", as the plugin did before
    validated = DOMAIN.environment(behaviour=Behaviour(validate_args=True))
    validated.run_function("user", "set_user_info", JOHN)
    out = json.loads(_call(validated, "assistant", "refuel_data", customer_id="C1001", line_id="L1002", gb_amount=2))
    assert out["message"] == "Successfully added 2.0 GB of data for line L1002 for $4.00"
    assert validated.db.get("bills", "B1003")["line_items"][0]["description"] == "Data refueling: 2.0 GB at $2.0/GB"
    # a string amount: tau2 fails on the comparison, validation coerces it
    assert env.call_tool("assistant", "refuel_data", {"customer_id": "C1001", "line_id": "L1002", "gb_amount": "2"}).content == (
        "Error: '<=' not supported between instances of 'str' and 'int'")
    assert not validated.call_tool("assistant", "refuel_data", {"customer_id": "C1001", "line_id": "L1002", "gb_amount": "2"}).error
    assert env.call_tool("assistant", "refuel_data", {"customer_id": "C1001", "line_id": "L1002", "gb_amount": 0}).content == (
        "Error: Refuel amount must be positive")


def test_refuel_without_a_draft_bill_opens_next_months_deterministically():
    bills = []
    for _ in range(2):
        env = _fresh(None)
        _call(env, "assistant", "refuel_data", customer_id="C1002", line_id="L1004", gb_amount=1.5)
        customer = env.db.get("customers", "C1002")
        assert len(customer["bill_ids"]) == 3
        bills.append(env.db.get("bills", customer["bill_ids"][-1]))
    assert bills[0] == bills[1]
    bill = bills[0]
    assert (bill["period_start"], bill["period_end"], bill["issue_date"], bill["due_date"], bill["status"]) == (
        "2025-03-01", "2025-03-31", "2025-03-01", "2025-03-15", "Draft")
    assert bill["total_due"] == pytest.approx(0.15)


def test_bills_and_payment_request_round_trip():
    env = _fresh()
    bills = json.loads(_call(env, "assistant", "get_bills_for_customer", customer_id="C1001"))
    assert [b["bill_id"] for b in bills] == ["B1003", "B1002", "B1001"]
    assert [b["bill_id"] for b in json.loads(_call(env, "assistant", "get_bills_for_customer", customer_id="C1001", limit=1))] == ["B1003"]
    assert env.call_tool("assistant", "send_payment_request", {"customer_id": "C1001", "bill_id": "B1004"}).content == (
        "Error: Bill B1004 not found for customer C1001")
    assert _call(env, "user", "check_payment_request") == "No payment request has been made."
    assert _call(env, "assistant", "send_payment_request", customer_id="C1001", bill_id="B1002") == (
        "Payment request sent to the customer for bill B1002")
    assert env.call_tool("assistant", "send_payment_request", {"customer_id": "C1001", "bill_id": "B1001"}).content == (
        "Error: A bill is already awaiting payment for this customer")
    assert _call(env, "user", "check_payment_request") == "You have a payment request for bill B1002 of 150.0 USD."
    assert _call(env, "user", "make_payment") == "Payment of 150.0 USD has been made for bill B1002."
    assert env.db.get("bills", "B1002")["status"] == "Paid"
    assert _call(env, "user", "check_payment_request") == "No payment request has been made."
    assert _call(env, "user", "make_payment") == "You do not have a payment request."


def test_suspend_and_resume_line_reach_the_phone_at_the_next_network_search():
    env = _fresh()
    out = json.loads(_call(env, "assistant", "suspend_line", customer_id="C1001", line_id="L1002", reason="travel"))
    assert out["message"] == "Line suspended successfully. $5/month holding fee will apply."
    assert out["line"]["status"] == "Suspended" and out["line"]["suspension_start_date"] == "2025-02-25"
    assert env.user._env("line_active") is False
    assert env.user.assert_service_status("connected")  # not yet noticed by the phone
    _call(env, "user", "reboot_device")
    assert env.user.assert_service_status("no_service")
    out = json.loads(_call(env, "assistant", "resume_line", customer_id="C1001", line_id="L1002"))
    assert out["line"]["status"] == "Active" and out["line"]["suspension_start_date"] is None
    assert env.call_tool("assistant", "resume_line", {"customer_id": "C1001", "line_id": "L1002"}).content == (
        "Error: Line must be suspended to resume")
    _call(env, "user", "reboot_device")
    assert env.user.assert_service_status("connected")
    assert env.assistant.assert_line_status("C1001", "L1002", "Active")


# --- agent lookups, catalog, policy -------------------------------------------------------------


def test_lookups_and_error_messages():
    env = _fresh(None)
    assert json.loads(_call(env, "assistant", "get_customer_by_phone", phone_number="555-123-2002"))["customer_id"] == "C1001"
    # tau2 compares phone numbers exactly; lenient lookups (an option) by their digits
    assert env.call_tool("assistant", "get_customer_by_phone", {"phone_number": "5551232002"}).content == (
        "Error: Customer with phone number 5551232002 not found")
    lenient = DOMAIN.environment(behaviour=Behaviour(lenient_lookups=True))
    for number in ("555-123-2002", "5551232002", "(555) 123 2001"):
        assert json.loads(_call(lenient, "assistant", "get_customer_by_phone", phone_number=number))["customer_id"] == "C1001"
    assert env.call_tool("assistant", "get_customer_by_phone", {"phone_number": "555-000-0000"}).content == (
        "Error: Customer with phone number 555-000-0000 not found")
    found = json.loads(_call(env, "assistant", "get_customer_by_name", full_name="john SMITH", dob="1985-06-15"))
    assert [c["customer_id"] for c in found] == ["C1001"]
    assert json.loads(_call(env, "assistant", "get_customer_by_name", full_name="John Smith", dob="1985-06-16")) == []
    customer = json.loads(_call(env, "assistant", "get_customer_by_id", customer_id="C1001"))
    assert customer["created_at"] == "2025-01-15 10:30:00" and customer["last_extension_date"] is None
    line = json.loads(_call(env, "assistant", "get_details_by_id", id="L1001"))
    assert line["suspension_start_date"] is None and line["last_sim_replacement_date"] is None
    assert json.loads(_call(env, "assistant", "get_details_by_id", id="P1002"))["data_refueling_price_per_gb"] == 2.0
    assert env.call_tool("assistant", "get_details_by_id", {"id": "X1"}).content == "Error: Unknown ID format or type: X1"
    assert env.call_tool("assistant", "get_details_by_id", {"id": "B9"}).content == "Error: Bill with ID B9 not found"
    assert env.call_tool("assistant", "get_data_usage", {"customer_id": "C1001", "line_id": "L1004"}).content == (
        "Error: Line L1004 not found for customer C1001")
    assert env.call_tool("assistant", "get_customer_by_id", {"customer_id": "C9"}).content == "Error: Customer with ID C9 not found"
    assert _call(env, "assistant", "transfer_to_human_agents", summary="locked SIM") == "Transfer successful"
    assert env.db.changes() == {}


def test_tool_catalog_matches_tau2():
    assert set(DOMAIN.assistant_tools.tool_kinds()) == AGENT_TOOLS
    assert set(DOMAIN.user_tools.tool_kinds()) == USER_TOOLS
    assert DOMAIN.user_tools.side == "user" and DOMAIN.assistant_tools.side == "assistant"
    for kit in (DOMAIN.assistant_tools, DOMAIN.user_tools):
        for schema in kit.schemas():
            fn = schema["function"]
            assert fn["description"], fn["name"]
            for name, prop in fn["parameters"]["properties"].items():
                assert prop.get("description") or "$ref" in prop or "allOf" in prop, (fn["name"], name)
    kinds = DOMAIN.user_tools.tool_kinds()
    assert kinds["toggle_roaming"] == "write" and kinds["run_speed_test"] == "read"
    assert DOMAIN.assistant_tools.tool_kinds()["transfer_to_human_agents"] == "generic"


def test_policy_is_main_policy_plus_tech_support_manual():
    text = DOMAIN.policy()
    main = (telecom.TELECOM_DIR / "main_policy.md").read_text(encoding="utf-8")
    manual = (telecom.TELECOM_DIR / "tech_support_manual.md").read_text(encoding="utf-8")
    assert text == f"<main_policy>\n{main}\n</main_policy>\n<tech_support_policy>\n{manual}\n</tech_support_policy>"
    assert "tech_support_workflow" not in text and telecom.policy("workflow") != text
    with pytest.raises(ValueError):
        telecom.policy("other")


def test_db_tables_are_keyed_by_id_and_keep_every_field():
    db = DOMAIN.db
    assert {t: len(db[t]) for t in ("plans", "devices", "lines", "customers", "bills")} == {
        "plans": 5, "devices": 9, "lines": 9, "customers": 4, "bills": 6}
    assert db["lines"]["L1003"]["suspension_start_date"] == "2025-02-01"
    assert db["bills"]["B1001"]["line_items"][3]["amount"] == 15.5
    assert db["customers"]["C1002"]["payment_methods"][1]["account_number_last_4"] == "5678"
    assert db["devices"]["D1002"]["last_esim_transfer_date"] == "2025-01-20 09:30:00"
    user_db = DOMAIN.user_db
    assert user_db["device"]["active_apn_settings"]["reset_at_reboot"] is False
    assert user_db["surroundings"]["signal_strength"]["5G"] == "excellent"
    assert set(telecom.task_splits()["base"]) == {t["id"] for t in telecom.load_tasks("tasks_base")}


def test_user_data_initialization_deep_merges_into_the_phone():
    env = DOMAIN.environment()
    env.apply_initial_state({"initialization_data": {"user_data": {
        "device": {"airplane_mode": True, "app_statuses": {"messaging": {"permissions": {"sms": False}}}},
        "surroundings": {"is_abroad": True}}}})
    assert env.user.assert_airplane_mode_status(True) and env.user._env("is_abroad") is True
    perms = env.user._dev("app_statuses")["messaging"]["permissions"]
    assert perms == {"sms": False, "storage": True, "phone": True, "network": False}


def test_evaluator_scores_gold_trajectories_of_the_base_set_as_one_and_a_wrong_order_as_zero():
    from matrix_plugin_tau2.evaluation import evaluate, gold_trajectory

    rewards = {t["id"]: evaluate("telecom", t, gold_trajectory(t, "telecom"))["reward"] for t in telecom.load_tasks("tasks_base")}
    assert set(rewards.values()) == {1.0}, [k for k, v in rewards.items() if v != 1.0][:3]
    task = copy.deepcopy(_task(OVERDUE))
    actions = task["evaluation_criteria"]["actions"]
    actions[2], actions[3] = actions[3], actions[2]  # reboot before the line is resumed
    wrong = gold_trajectory(task, "telecom")
    assert evaluate("telecom", _task(OVERDUE), wrong)["reward"] == 0.0
