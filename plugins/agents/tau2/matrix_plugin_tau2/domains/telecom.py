"""tau2's telecom domain: a carrier's customer service (agent tools over the customer
database) with dual control: the user acts on their own phone (see ``_telecom_device``),
and after every step the line's state in the carrier's database is pushed to the phone.

Re-implemented from tau2-bench's published behaviour; the data files are MIT, Sierra Research.
"""
import datetime
import functools
import hashlib
from typing import Any, Callable

import tomllib

from ..env import (
    DATA_DIR,
    GENERIC,
    READ,
    WRITE,
    Domain,
    Environment,
    ToolError,
    Toolkit,
    fold_text,
    load_json,
    tool,
)
from ._telecom_device import TelecomUserTools, load_user_db

TELECOM_DIR = DATA_DIR / "domains" / "telecom"
TODAY = datetime.date(2025, 2, 25)  # tau2's fixed clock for telecom

# Each table's fields in tau2's model order, with the model defaults for absent fields.
_FIELDS: dict[str, dict[str, Any]] = {
    "plans": {"plan_id": ..., "name": ..., "data_limit_gb": ..., "price_per_month": ..., "data_refueling_price_per_gb": ...},
    "devices": {
        "device_id": ..., "device_type": ..., "model": ..., "imei": None, "is_esim_capable": ...,
        "activated": False, "activation_date": None, "last_esim_transfer_date": None,
    },
    "lines": {
        "line_id": ..., "phone_number": ..., "status": "Pending Activation", "plan_id": ..., "device_id": None,
        "data_used_gb": 0.0, "data_refueling_gb": 0.0, "roaming_enabled": False, "contract_end_date": None,
        "last_plan_change_date": None, "last_sim_replacement_date": None, "suspension_start_date": None,
    },
    "bills": {
        "bill_id": ..., "customer_id": ..., "period_start": ..., "period_end": ..., "issue_date": ...,
        "total_due": ..., "due_date": ..., "line_items": [], "status": "Draft",
    },
    "customers": {
        "customer_id": ..., "full_name": ..., "date_of_birth": ..., "email": ..., "phone_number": ...,
        "address": ..., "account_status": "Pending Verification", "payment_methods": [], "line_ids": [],
        "bill_ids": [], "created_at": "2025-01-01", "last_extension_date": None, "goodwill_credit_used_this_year": 0.0,
    },
}
_ID_FIELD = {"plans": "plan_id", "devices": "device_id", "lines": "line_id", "bills": "bill_id", "customers": "customer_id"}
# tau2 shows these datetimes as Python's str(datetime) ("2025-01-20 14:30:00").
_DATETIME_FIELDS = {"devices": ("activation_date", "last_esim_transfer_date"), "customers": ("created_at",)}
_ID_TABLES = {"L": "lines", "D": "devices", "B": "bills", "C": "customers", "P": "plans"}
_NOT_FOUND = {"lines": "Line", "devices": "Device", "bills": "Bill", "customers": "Customer", "plans": "Plan"}


def _plain(value: Any) -> Any:
    """TOML dates/times as the strings tau2 shows."""
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _record(table: str, raw: dict[str, Any], where: str) -> dict[str, Any]:
    record = {}
    for name, default in _FIELDS[table].items():
        if name in raw:
            record[name] = _plain(raw[name])
        elif default is ...:
            raise ValueError(f"{where}: {table} record {raw.get(_ID_FIELD[table])!r} lacks required field {name!r}")
        else:
            record[name] = list(default) if isinstance(default, list) else default
    for name, value in raw.items():  # keep fields a newer data release may add
        record.setdefault(name, _plain(value))
    for name in _DATETIME_FIELDS.get(table, ()):
        if isinstance(record.get(name), str):
            record[name] = record[name].replace("T", " ")
    return record


def load_db() -> dict[str, dict[str, Any]]:
    """tau2's ``db.toml``, each array as a table keyed by its id (every field kept)."""
    path = TELECOM_DIR / "db.toml"
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    tables: dict[str, dict[str, Any]] = {}
    for table, id_field in _ID_FIELD.items():
        tables[table] = {}
        for item in raw.get(table, []):
            record = _record(table, item, str(path))
            tables[table][record[id_field]] = record
    tables["phone_number_aliases"] = dict(raw.get("phone_number_aliases", {}))
    return tables


def policy(kind: str = "manual") -> str:
    """The agent policy: the main policy plus the tech-support ``manual`` (or ``workflow``)."""
    if kind not in ("manual", "workflow"):
        raise ValueError(f"telecom policy kind must be 'manual' or 'workflow', got {kind!r}")
    main = (TELECOM_DIR / "main_policy.md").read_text(encoding="utf-8")
    tech = (TELECOM_DIR / f"tech_support_{kind}.md").read_text(encoding="utf-8")
    return f"<main_policy>\n{main}\n</main_policy>\n<tech_support_policy>\n{tech}\n</tech_support_policy>"


@functools.cache
def load_tasks(variant: str = "tasks") -> list[dict[str, Any]]:
    """A telecom task file (``tasks`` = all 2285, ``tasks_base`` = the 114 base tasks), read once per process."""
    return load_json(TELECOM_DIR / f"{variant}.json")


@functools.cache
def task_splits() -> dict[str, list[str]]:
    """Task ids per split (``small``, ``train``, ``test``, ``full``, ``base``)."""
    return load_json(TELECOM_DIR / "split_tasks.json")


def _digits(phone_number: str) -> str:
    # Lenient lookups match on the digit sequence: '555-123-2002', '5551232002' and '555 123 2002' are one number.
    return "".join(ch for ch in phone_number if ch.isdigit())


def _exact(phone_number: str) -> str:
    return phone_number


def _lower(text: str) -> str:
    return text.lower()




def _next_month_start(day: datetime.date) -> datetime.date:
    return (day.replace(day=1) + datetime.timedelta(days=32)).replace(day=1)


class TelecomTools(Toolkit):
    """The carrier agent's tools over the customer database (clock fixed at 2025-02-25)."""

    side = "assistant"

    # --- lookups -------------------------------------------------------------------------

    def _phone_key(self) -> Callable[[str], str]:
        """tau2 compares phone numbers exactly; lenient lookups by their digits."""
        return _digits if self.behaviour.lenient_lookups else _exact

    def _find(self, table: str, key: str) -> dict[str, Any]:
        record = self.db.get(table, key)
        if record is None:
            raise ToolError(f"{_NOT_FOUND[table]} with ID {key} not found")
        return record

    def _line_by_phone(self, phone_number: str) -> dict[str, Any]:
        _digits = self._phone_key()
        wanted = _digits(phone_number)
        for alias, canonical in self.db.items("phone_number_aliases"):
            if _digits(alias) == wanted:
                wanted = _digits(canonical)
                break
        for line in self.db.values("lines"):
            if wanted and _digits(line["phone_number"]) == wanted:
                return line
        raise ToolError(f"Line with phone number {phone_number} not found")

    def _target_line(self, customer_id: str, line_id: str) -> dict[str, Any]:
        customer = self.get_customer_by_id(customer_id)
        if line_id not in customer["line_ids"]:
            raise ToolError(f"Line {line_id} not found for customer {customer_id}")
        return self._find("lines", line_id)

    def _bills_awaiting_payment(self, customer: dict[str, Any]) -> list[dict[str, Any]]:
        bills = (self._find("bills", bill_id) for bill_id in customer["bill_ids"])
        return [bill for bill in bills if bill["status"] == "Awaiting Payment"]

    @tool(READ)
    def get_customer_by_phone(self, phone_number: str) -> dict[str, Any]:
        """Finds the customer whose primary contact number, or one of whose lines, has this phone number.

        Args:
            phone_number: The phone number to look up.
        """
        _digits = self._phone_key()
        wanted = _digits(phone_number)
        if wanted:
            for customer in self.db.values("customers"):
                if _digits(customer["phone_number"]) == wanted:
                    return customer
                for line_id in customer["line_ids"]:
                    if _digits(self._find("lines", line_id)["phone_number"]) == wanted:
                        return customer
        raise ToolError(f"Customer with phone number {phone_number} not found")

    @tool(READ)
    def get_customer_by_id(self, customer_id: str) -> dict[str, Any]:
        """Gets a customer by their customer ID.

        Args:
            customer_id: The customer's unique ID (e.g. C1001).
        """
        return self._find("customers", customer_id)

    @tool(READ)
    def get_customer_by_name(self, full_name: str, dob: str) -> list[dict[str, Any]]:
        """Finds customers by full name and date of birth; the date of birth tells apart customers with similar names.

        Args:
            full_name: The customer's full name.
            dob: The customer's date of birth, as YYYY-MM-DD.
        """
        fold = fold_text if self.behaviour.lenient_lookups else _lower
        wanted = fold(full_name)
        return [c for c in self.db.values("customers") if fold(c["full_name"]) == wanted and c["date_of_birth"] == dob]

    @tool(READ)
    def get_details_by_id(self, id: str) -> dict[str, Any]:
        """Gets the record for an ID of a customer (C...), line (L...), device (D...), bill (B...) or plan (P...).

        Args:
            id: The ID to look up.
        """
        table = _ID_TABLES.get(id[:1])
        if table is None:
            raise ToolError(f"Unknown ID format or type: {id}")
        return self._find(table, id)

    # --- lines ---------------------------------------------------------------------------

    @tool(WRITE)
    def suspend_line(self, customer_id: str, line_id: str, reason: str) -> dict[str, Any]:
        """Suspends an active line (for at most 6 months); a $5/month holding fee applies.

        Args:
            customer_id: ID of the customer who owns the line.
            line_id: ID of the line to suspend.
            reason: Why the line is being suspended.
        """
        if self._target_line(customer_id, line_id)["status"] != "Active":
            raise ToolError("Line must be active to suspend")
        line = self.db.edit("lines", line_id)
        line["status"] = "Suspended"
        line["suspension_start_date"] = str(TODAY)
        return {"message": "Line suspended successfully. $5/month holding fee will apply.", "line": line}

    @tool(WRITE)
    def resume_line(self, customer_id: str, line_id: str) -> dict[str, Any]:
        """Resumes a suspended (or pending activation) line, making it active again.

        Args:
            customer_id: ID of the customer who owns the line.
            line_id: ID of the line to resume.
        """
        if self._target_line(customer_id, line_id)["status"] not in ("Suspended", "Pending Activation"):
            raise ToolError("Line must be suspended to resume")
        line = self.db.edit("lines", line_id)
        line["status"] = "Active"
        line["suspension_start_date"] = None
        return {"message": "Line resumed successfully", "line": line}

    # --- billing -------------------------------------------------------------------------

    @tool(READ)
    def get_bills_for_customer(self, customer_id: str, limit: int = 12) -> list[dict[str, Any]]:
        """Lists a customer's bills, most recently issued first.

        Args:
            customer_id: ID of the customer.
            limit: The most bills to return.
        """
        customer = self.get_customer_by_id(customer_id)
        bills = [self._find("bills", bill_id) for bill_id in customer["bill_ids"]]
        return sorted(bills, key=lambda bill: bill["issue_date"], reverse=True)[:limit]

    @tool(WRITE)
    def send_payment_request(self, customer_id: str, bill_id: str) -> str:
        """Sends the customer a request to pay one of their bills, which then awaits payment.
        Refused when another of the customer's bills is already awaiting payment. It does not
        check whether the bill is already paid, so check the bill's status first.

        Args:
            customer_id: ID of the customer who owns the bill.
            bill_id: ID of the bill to request payment for.
        """
        customer = self.get_customer_by_id(customer_id)
        if self._bills_awaiting_payment(customer):
            raise ToolError("A bill is already awaiting payment for this customer")
        if bill_id not in customer["bill_ids"]:
            raise ToolError(f"Bill {bill_id} not found for customer {customer_id}")
        self._find("bills", bill_id)
        self.db.edit("bills", bill_id)["status"] = "Awaiting Payment"
        return f"Payment request sent to the customer for bill {bill_id}"

    def _apply_one_time_charge(self, customer_id: str, amount: float, description: str) -> None:
        """Adds a charge to the customer's draft bill, opening next month's draft if there is none."""
        customer = self.get_customer_by_id(customer_id)
        draft_id = next((b for b in customer["bill_ids"] if self._find("bills", b)["status"] == "Draft"), None)
        if draft_id is None:
            start = _next_month_start(TODAY)
            # tau2 draws a random id; ours is derived from the state so replays are deterministic.
            seed = f"{customer_id}/{self.db.count('bills')}/{len(customer['bill_ids'])}"
            draft_id = "B" + hashlib.sha256(seed.encode()).hexdigest()[:8]
            self.db.put("bills", draft_id, {
                "bill_id": draft_id, "customer_id": customer_id, "period_start": str(start),
                "period_end": str(_next_month_start(start) - datetime.timedelta(days=1)),
                "issue_date": str(start), "total_due": 0, "due_date": str(start + datetime.timedelta(days=14)),
                "line_items": [], "status": "Draft",
            })
            self.db.edit("customers", customer_id)["bill_ids"].append(draft_id)
        bill = self.db.edit("bills", draft_id)
        bill["line_items"].append(
            {"description": description, "amount": amount, "date": str(TODAY), "item_type": "Credit" if amount < 0 else "Charge"}
        )
        bill["total_due"] += amount

    # --- usage and roaming ---------------------------------------------------------------

    @tool(READ, scalars_as_text=True)
    def get_data_usage(self, customer_id: str, line_id: str) -> dict[str, Any]:
        """Gets a line's data usage in the current billing cycle: data used, plan limit, data refueled, and the cycle's end date.

        Args:
            customer_id: ID of the customer who owns the line.
            line_id: ID of the line.
        """
        line = self._target_line(customer_id, line_id)
        plan = self._find("plans", line["plan_id"])
        return {
            "line_id": line_id,
            "data_used_gb": line["data_used_gb"],
            "data_limit_gb": plan["data_limit_gb"],
            "data_refueling_gb": line["data_refueling_gb"],
            "cycle_end_date": str(_next_month_start(TODAY) - datetime.timedelta(days=1)),
        }

    def set_data_usage(self, customer_id: str, line_id: str, data_used_gb: float) -> str:
        self._target_line(customer_id, line_id)
        self.db.edit("lines", line_id)["data_used_gb"] = data_used_gb
        return f"Data usage set to {data_used_gb} GB for line {line_id}"

    @tool(WRITE)
    def enable_roaming(self, customer_id: str, line_id: str) -> str:
        """Turns on international roaming for a line.

        Args:
            customer_id: ID of the customer who owns the line.
            line_id: ID of the line.
        """
        if self._target_line(customer_id, line_id)["roaming_enabled"]:
            return "Roaming was already enabled"
        self.db.edit("lines", line_id)["roaming_enabled"] = True
        return "Roaming enabled successfully"

    @tool(WRITE)
    def disable_roaming(self, customer_id: str, line_id: str) -> str:
        """Turns off international roaming for a line.

        Args:
            customer_id: ID of the customer who owns the line.
            line_id: ID of the line.
        """
        if not self._target_line(customer_id, line_id)["roaming_enabled"]:
            return "Roaming was already disabled"
        self.db.edit("lines", line_id)["roaming_enabled"] = False
        return "Roaming disabled successfully"

    @tool(WRITE, scalars_as_text=True)
    def refuel_data(self, customer_id: str, line_id: str, gb_amount: float) -> dict[str, Any]:
        """Adds extra data to a line for this billing cycle, charged to the customer's next bill at the plan's refuelling price per GB.

        Args:
            customer_id: ID of the customer who owns the line.
            line_id: ID of the line.
            gb_amount: How much data to add, in GB (positive).
        """
        line = self._target_line(customer_id, line_id)
        if gb_amount <= 0:
            raise ToolError("Refuel amount must be positive")
        plan = self._find("plans", line["plan_id"])
        price = plan["data_refueling_price_per_gb"]
        charge = gb_amount * price
        edited = self.db.edit("lines", line_id)
        edited["data_refueling_gb"] += gb_amount
        self._apply_one_time_charge(customer_id, charge, f"Data refueling: {gb_amount} GB at ${price}/GB")
        return {
            "message": f"Successfully added {gb_amount} GB of data for line {line_id} for ${charge:.2f}",
            "new_data_refueling_gb": edited["data_refueling_gb"],
            "charge": charge,
        }

    @tool(GENERIC)
    def transfer_to_human_agents(self, summary: str) -> str:
        """Transfers the user to a human agent, with a summary of their issue. Transfer only
        when the user explicitly asks for a human agent, or when the policy and the available
        tools cannot solve the user's issue.

        Args:
            summary: A summary of the user's issue.
        """
        return "Transfer successful"

    # --- initialization actions ----------------------------------------------------------

    def suspend_line_for_overdue_bill(self, customer_id: str, line_id: str, new_bill_id: str, contract_ended: bool) -> str:
        """Creates last month's overdue bill for the line's plan and suspends the line for it."""
        line = self._find("lines", line_id)
        if line["status"] != "Active":
            raise ToolError("Line must be active to suspend for unpaid bill")
        amount = self._find("plans", line["plan_id"])["price_per_month"]
        if amount <= 0:
            raise ToolError("Amount must be positive for overdue bill")
        customer = self.get_customer_by_id(customer_id)
        if any(self._find("bills", b)["status"] == "Overdue" for b in customer["bill_ids"]):
            raise ToolError("Customer already has an overdue bill")
        last_month_end = TODAY.replace(day=1) - datetime.timedelta(days=1)
        last_month_start = last_month_end.replace(day=1)
        self.db.put("bills", new_bill_id, {
            "bill_id": new_bill_id, "customer_id": customer_id, "period_start": str(last_month_start),
            "period_end": str(last_month_end), "issue_date": str(last_month_start), "total_due": amount,
            "due_date": str(last_month_start + datetime.timedelta(days=14)),
            "line_items": [{"description": f"Charge for line {line_id}", "amount": amount, "date": str(TODAY), "item_type": "Charge"}],
            "status": "Overdue",
        })
        self.db.edit("customers", customer_id)["bill_ids"].append(new_bill_id)
        edited = self.db.edit("lines", line_id)
        edited["status"] = "Suspended"
        edited["suspension_start_date"] = str(TODAY)
        if contract_ended:
            edited["contract_end_date"] = str(last_month_end)
        return f"Line {line_id} suspended for unpaid bill {new_bill_id}. Contract ended: {contract_ended}"

    # --- assertions ----------------------------------------------------------------------

    def assert_data_refueling_amount(self, customer_id: str, line_id: str, expected_amount: float) -> bool:
        return abs(self._target_line(customer_id, line_id)["data_refueling_gb"] - expected_amount) < 1e-6

    def assert_line_status(self, customer_id: str, line_id: str, expected_status: str) -> bool:
        return self._target_line(customer_id, line_id)["status"] == expected_status

    def assert_overdue_bill_exists(self, customer_id: str, overdue_bill_id: str) -> bool:
        customer = self.get_customer_by_id(customer_id)
        if overdue_bill_id not in customer["bill_ids"]:
            raise ToolError(f"Overdue bill {overdue_bill_id} not found")
        if self._find("bills", overdue_bill_id)["status"] != "Overdue":
            raise ToolError(f"Overdue bill {overdue_bill_id} is not overdue")
        return True

    def assert_no_overdue_bill(self, overdue_bill_id: str) -> bool:
        bill = self.db.get("bills", overdue_bill_id)
        return bill is None or bill["status"] == "Paid"


def sync(env: Environment) -> None:
    """Pushes the carrier's view of the user's line to the phone (tau2's ``sync_tools``):
    line active, roaming allowed, data allowance exceeded, and payment requests both ways.
    The phone reacts at its next network search (e.g. a reboot), as in tau2."""
    user: TelecomUserTools = env.user
    agent: TelecomTools = env.assistant
    phone_number = user._env("phone_number")
    if phone_number is None:
        return
    try:
        line = agent._line_by_phone(phone_number)
    except ToolError:
        raise ToolError(f"Wrong scenario, line not found for phone number: {phone_number}") from None
    user._set_env("line_active", line["status"] == "Active")
    user._set_env("roaming_allowed", bool(line["roaming_enabled"]))
    plan = agent._find("plans", line["plan_id"])
    user._set_env("mobile_data_usage_exceeded", line["data_used_gb"] >= plan["data_limit_gb"] + line["data_refueling_gb"])

    request = user._env("payment_request")
    if request is not None and request.get("paid"):
        agent.db.edit("bills", request["bill_id"])["status"] = "Paid"
        user._set_env("payment_request", None)
        request = None
    if request is None:
        awaiting = agent._bills_awaiting_payment(agent.get_customer_by_phone(phone_number))
        if awaiting:
            bill = awaiting[0]
            user._set_env("payment_request", {"bill_id": bill["bill_id"], "amount_due": bill["total_due"], "paid": False})


def domain() -> Domain:
    return Domain(
        name="telecom",
        assistant_tools=TelecomTools,
        load_db=load_db,
        policy=policy,
        user_tools=TelecomUserTools,
        load_user_db=load_user_db,
        sync=sync,
    )
