"""Tool results, errors included, are the same text in every process (the environment and the
evaluator's replay run in different processes), and a call without its required arguments
fails as tau2's does."""
import json
import subprocess
import sys


from matrix_plugin_tau2.env import get_domain
from matrix_plugin_tau2.versions import Behaviour

SCRIPT = """
import inspect, json, sys
from matrix_plugin_tau2.env import DOMAINS, get_domain
from matrix_plugin_tau2.versions import Behaviour
out = {}
for validate in (False, True):
    for name in DOMAINS:
        domain = get_domain(name)
        env = domain.environment(behaviour=Behaviour(validate_args=validate))
        for side, kit in (("assistant", domain.assistant_tools), ("user", domain.user_tools)):
            for tool in sorted((kit.tool_kinds() if kit else {})):
                params = list(inspect.signature(getattr(kit, tool)).parameters.values())[1:]
                if any(p.default is inspect.Parameter.empty for p in params):
                    r = env.call_tool(side, tool, {})
                    out[f"{validate}/{name}/{side}/{tool}"] = [r.content, r.error]
json.dump(out, sys.stdout)
"""


def _run():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_every_tool_without_its_required_arguments_gives_the_same_error_in_two_processes():
    first, second = _run(), _run()
    assert first == second
    assert len(first) >= 2 * 50  # every domain's tools with required arguments, both modes
    for key, (content, error) in first.items():
        assert error and content.startswith("Error: "), key
        assert " at 0x" not in content, key
    # tau2 calls the tool as given: Python's own message, as tau2's get_response renders it
    assert first["False/airline/assistant/cancel_reservation"][0] == (
        "Error: AirlineTools.cancel_reservation() missing 1 required positional argument: 'reservation_id'")
    assert first["False/telecom/assistant/suspend_line"][0] == (
        "Error: TelecomTools.suspend_line() missing 3 required positional arguments: 'customer_id', 'line_id', and 'reason'")
    # validation (an option) names the missing argument, without the input's repr
    assert first["True/airline/assistant/cancel_reservation"][0] == (
        "Error: 1 validation error(s) for AirlineTools.cancel_reservation: reservation_id: Missing required argument")


def test_validation_errors_name_the_argument_and_carry_no_object_repr():
    env = get_domain("retail").environment(behaviour=Behaviour(validate_args=True))
    result = env.call_tool("assistant", "get_order_details", {"order_id": ["#W1"]})
    assert result.error and "order_id" in result.content and " at 0x" not in result.content and "input_value" not in result.content


def test_argument_types_as_tau2_takes_them():
    """tau2 does not validate or coerce: a float amount is kept, text for a summary is not required."""
    airline = get_domain("airline")
    env = airline.environment()
    user = "mia_li_3668"
    assert env.call_tool("assistant", "send_certificate", {"user_id": user, "amount": 12.5}).content.endswith("with amount 12.5.")
    assert env.call_tool("assistant", "transfer_to_human_agents", {"summary": 123}).content == "Transfer successful"
    refused = airline.environment(behaviour=Behaviour(validate_args=True))
    assert refused.call_tool("assistant", "send_certificate", {"user_id": user, "amount": 12.5}).error
    assert refused.call_tool("assistant", "transfer_to_human_agents", {"summary": 123}).error
    # total_baggages=6.0 is stored as given (tau2 keeps the float: a different DB than 6)
    as_int, as_float = airline.environment(), airline.environment()
    base = {"reservation_id": "4WQ150", "nonfree_baggages": 0, "payment_id": "gift_card_3576581"}
    r_int = as_int.call_tool("assistant", "update_reservation_baggages", {**base, "total_baggages": 6})
    r_float = as_float.call_tool("assistant", "update_reservation_baggages", {**base, "total_baggages": 6.0})
    assert not r_int.error and not r_float.error
    assert json.loads(r_float.content)["total_baggages"] == 6.0 and "\"total_baggages\": 6.0" in r_float.content
    assert as_int.db.digest() != as_float.db.digest()
