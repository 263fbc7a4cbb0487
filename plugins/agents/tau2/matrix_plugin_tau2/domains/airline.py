"""tau2's airline domain: flights, users and reservations, and the agent's 14 tools.

Re-implemented from tau2-bench's published specification; tool names, arguments, result
shapes and error messages are tau2's, so trajectories and DB checks agree with it. Every
write goes through :class:`State` (copy on first write), never into the shared base.

Semantics worth knowing (tau2's, kept on purpose):

* The clock is fixed at ``2024-05-15T15:00:00``; new reservations are ``HATHAT``,
  ``HATHAU``, ``HATHAV`` and new certificates ``certificate_3221322`` .. ``_3221324``
  (the first free one), so replays are deterministic.
* Booking takes seats and charges the payment methods (gift cards lose the amount, a
  certificate is used up whole); changing flights or cabin takes no seats and
  cancelling frees none: tau2 leaves the flight table alone there.
* Cancelling only records a negative copy of every ``payment_history`` entry; balances
  are not credited back.
* Records are held in tau2's pydantic dump form (field order, ``status: None`` on open
  reservations, float gift-card and certificate amounts), so results read like tau2's.
* Ids are looked up exactly first, then ignoring case, accents and surrounding spaces
  (tau2's tolerant lookup; the stored and returned ids are always the canonical ones).
"""
from __future__ import annotations

import functools
from typing import Any, Literal

import pydantic

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

_DIR = DATA_DIR / "domains" / "airline"

NOW = "2024-05-15T15:00:00"
NEW_RESERVATION_IDS = ("HATHAT", "HATHAU", "HATHAV")
NEW_CERTIFICATE_IDS = tuple(f"certificate_{n}" for n in (3221322, 3221323, 3221324))
INSURANCE_FEE = 30  # per passenger
BAG_FEE = 50  # per non-free bag

FlightType = Literal["round_trip", "one_way"]
CabinClass = Literal["business", "economy", "basic_economy"]
Insurance = Literal["yes", "no"]

AIRPORTS = (
    ("SFO", "San Francisco"), ("JFK", "New York"), ("LAX", "Los Angeles"), ("ORD", "Chicago"),
    ("DFW", "Dallas"), ("DEN", "Denver"), ("SEA", "Seattle"), ("ATL", "Atlanta"),
    ("MIA", "Miami"), ("BOS", "Boston"), ("PHX", "Phoenix"), ("IAH", "Houston"),
    ("LAS", "Las Vegas"), ("MCO", "Orlando"), ("EWR", "Newark"), ("CLT", "Charlotte"),
    ("MSP", "Minneapolis"), ("DTW", "Detroit"), ("PHL", "Philadelphia"), ("LGA", "LaGuardia"),
)


class FlightInfo(pydantic.BaseModel):
    """One flight segment to book: a flight number on a date."""

    flight_number: str = pydantic.Field(description="Flight number, such as 'HAT001'.")
    date: str = pydantic.Field(description="Date of the flight, 'YYYY-MM-DD', such as '2024-05-01'.")


class Passenger(pydantic.BaseModel):  # unknown keys are dropped, as tau2's model drops them
    """A traveller: first name, last name and date of birth."""

    first_name: str = pydantic.Field(description="Passenger's first name.")
    last_name: str = pydantic.Field(description="Passenger's last name.")
    dob: str = pydantic.Field(description="Date of birth, 'YYYY-MM-DD'.")


class Payment(pydantic.BaseModel):
    """An amount charged to one of the user's saved payment methods."""

    payment_id: str = pydantic.Field(description="Id of a payment method in the user's profile, such as 'credit_card_7815826'.")
    amount: int = pydantic.Field(description="Amount in dollars charged to this method.")


class Reservation(pydantic.BaseModel):
    """The fields of a new reservation that tau2's Reservation model validates when it is built (named as tau2's: same error text)."""

    origin: str
    destination: str
    flight_type: FlightType
    cabin: CabinClass
    total_baggages: int
    nonfree_baggages: int
    insurance: Insurance


# --- the base tables in tau2's dump form ----------------------------------------------------

# Field order of tau2's pydantic models (json.dumps of a tau2 result follows it).
_FLIGHT_FIELDS = ("flight_number", "origin", "destination", "scheduled_departure_time_est", "scheduled_arrival_time_est", "dates")
_USER_FIELDS = ("user_id", "name", "address", "email", "dob", "payment_methods", "saved_passengers", "membership", "reservations")
_ADDRESS_FIELDS = ("address1", "address2", "city", "country", "state", "zip")
_RESERVATION_FIELDS = (
    "reservation_id", "user_id", "origin", "destination", "flight_type", "cabin", "flights", "passengers",
    "payment_history", "created_at", "total_baggages", "nonfree_baggages", "insurance", "status",
)
_SEGMENT_FIELDS = ("flight_number", "origin", "destination", "date", "price")
_METHOD_FIELDS = {"credit_card": ("source", "id", "brand", "last_four"), "gift_card": ("source", "id", "amount"), "certificate": ("source", "id", "amount")}
_OPTIONAL = {"status": None, "address2": None}


def _ordered(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    out = {name: record.get(name, _OPTIONAL.get(name)) for name in fields}
    out.update((k, v) for k, v in record.items() if k not in out)
    return out


def _method(method: dict[str, Any]) -> dict[str, Any]:
    out = _ordered(method, _METHOD_FIELDS.get(method.get("source"), ("source", "id")))
    if "amount" in out and out["source"] != "credit_card":
        out["amount"] = float(out["amount"])  # tau2 types balances as float
    return out


def _normalized(db: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    flights = {k: _ordered(f, _FLIGHT_FIELDS) for k, f in db["flights"].items()}
    users = {}
    for key, user in db["users"].items():
        user = _ordered(user, _USER_FIELDS)
        user["address"] = _ordered(user["address"], _ADDRESS_FIELDS)
        user["payment_methods"] = {k: _method(m) for k, m in user["payment_methods"].items()}
        users[key] = user
    reservations = {}
    for key, res in db["reservations"].items():
        res = _ordered(res, _RESERVATION_FIELDS)
        res["flights"] = [_ordered(s, _SEGMENT_FIELDS) for s in res["flights"]]
        reservations[key] = res
    return {"flights": flights, "users": users, "reservations": reservations}


def _load_db() -> dict[str, dict[str, Any]]:
    return _normalized(load_json(_DIR / "db.json"))


@functools.cache
def _policy() -> str:
    return (_DIR / "policy.md").read_text(encoding="utf-8")




# --- the tools ------------------------------------------------------------------------------


class AirlineTools(Toolkit):
    """The airline agent's tools over ``flights``, ``users`` and ``reservations``."""

    side = "assistant"

    # lookups -----------------------------------------------------------------------------

    def _key(self, table: str, key: str) -> str | None:
        if self.db.has(table, key):
            return key
        if not self.behaviour.lenient_lookups:  # tau2: the exact key
            return None
        if self.db.has(table, key.strip()):
            return key.strip()
        folded = fold_text(key)
        return next((k for k in self.db.keys(table) if fold_text(k) == folded), None)

    def _user_id(self, user_id: str) -> str:
        key = self._key("users", user_id)
        if key is None:
            raise ToolError(f"User {user_id} not found")
        return key

    def _reservation_id(self, reservation_id: str) -> str:
        key = self._key("reservations", reservation_id)
        if key is None:
            raise ToolError(f"Reservation {reservation_id} not found")
        return key

    def _flight_number(self, flight_number: str) -> str:
        key = self._key("flights", flight_number)
        if key is None:
            raise ToolError(f"Flight {flight_number} not found")
        return key

    def _flight_date(self, flight_number: str, date: str) -> dict[str, Any]:
        flight = self.db.get("flights", self._flight_number(flight_number))
        if date not in flight["dates"]:
            raise ToolError(f"Flight {flight_number} not found on date {date}")
        return flight["dates"][date]

    def _bookable(self, flight_number: str, date: str, cabin: str, seats: int) -> dict[str, Any]:
        """The flight's data on ``date`` after checking it can be booked for ``seats`` passengers."""
        day = self._flight_date(flight_number, date)
        if day["status"] != "available":
            raise ToolError(f"Flight {flight_number} not available on date {date}")
        if day["available_seats"][cabin] < seats:
            raise ToolError(f"Not enough seats on flight {flight_number}")
        return day

    def _direct_flights(self, date: str, origin: str | None, destination: str | None, leave_after: str | None = None) -> list[dict[str, Any]]:
        found = []
        for flight in self.db.values("flights"):
            day = flight["dates"].get(date)
            if (
                day is not None
                and day["status"] == "available"
                and (origin is None or flight["origin"] == origin)
                and (destination is None or flight["destination"] == destination)
                and (leave_after is None or flight["scheduled_departure_time_est"] >= leave_after)
            ):
                found.append({
                    "flight_number": flight["flight_number"],
                    "origin": flight["origin"],
                    "destination": flight["destination"],
                    "status": "available",
                    "scheduled_departure_time_est": flight["scheduled_departure_time_est"],
                    "scheduled_arrival_time_est": flight["scheduled_arrival_time_est"],
                    "date": None,
                    "available_seats": dict(day["available_seats"]),
                    "prices": dict(day["prices"]),
                })
        return found

    def _charge_for_update(self, user_id: str, payment_id: str, amount: int) -> dict[str, Any] | None:
        """Charges (or, if negative, refunds) ``amount`` to a saved method; the payment record, if any."""
        method = self.db.get("users", user_id)["payment_methods"].get(payment_id)
        if method is None:
            raise ToolError("Payment method not found")
        if method["source"] == "certificate":
            raise ToolError("Certificate cannot be used to update reservation")
        if method["source"] == "gift_card":
            if method["amount"] < amount:
                raise ToolError("Gift card balance is not enough")
            self.db.edit("users", user_id)["payment_methods"][payment_id]["amount"] -= amount
        return {"payment_id": payment_id, "amount": amount} if amount != 0 else None

    # tools -------------------------------------------------------------------------------

    @tool(WRITE)
    def book_reservation(
        self,
        user_id: str,
        origin: str,
        destination: str,
        flight_type: FlightType,
        cabin: CabinClass,
        flights: list[FlightInfo],
        passengers: list[Passenger],
        payment_methods: list[Payment],
        total_baggages: int,
        nonfree_baggages: int,
        insurance: Insurance,
    ) -> dict:
        """Book a new reservation for a user, charging the given payment methods.

        The payments must add up exactly to the total: the cabin price of every flight for
        every passenger, plus 30 per passenger for insurance, plus 50 per non-free bag.

        Args:
            user_id: The ID of the user making the booking, such as 'sara_doe_496'.
            origin: IATA code of the trip's origin city, such as 'SFO'.
            destination: IATA code of the trip's destination city, such as 'JFK'.
            flight_type: 'one_way' or 'round_trip'.
            cabin: The cabin class for all flights: 'basic_economy', 'economy' or 'business'.
            flights: Every flight segment of the trip, each with its flight number and date.
            passengers: Every passenger, each with first name, last name and date of birth.
            payment_methods: The payment methods from the user's profile and the amount charged to each.
            total_baggages: Total number of checked bags on the reservation.
            nonfree_baggages: How many of those bags are paid for.
            insurance: Whether travel insurance is bought: 'yes' or 'no'.
        """
        user_id = self._user_id(user_id)
        reservation_id = next((r for r in NEW_RESERVATION_IDS if not self.db.has("reservations", r)), None)
        if reservation_id is None:
            raise ToolError("Too many reservations")

        # tau2 builds its Reservation model here, which checks and converts these (3.0 -> 3)
        new = Reservation(origin=origin, destination=destination, flight_type=flight_type, cabin=cabin,
                              total_baggages=total_baggages, nonfree_baggages=nonfree_baggages, insurance=insurance)
        origin, destination, flight_type, cabin = new.origin, new.destination, new.flight_type, new.cabin
        total_baggages, nonfree_baggages, insurance = new.total_baggages, new.nonfree_baggages, new.insurance

        segments, days, total = [], [], 0
        for info in flights:
            flight = self.db.get("flights", self._flight_number(info.flight_number))
            days.append(self._bookable(flight["flight_number"], info.date, cabin, len(passengers)))
            price = days[-1]["prices"][cabin]
            segments.append({"flight_number": flight["flight_number"], "origin": flight["origin"],
                             "destination": flight["destination"], "date": info.date, "price": price})
            total += price * len(passengers)
        if insurance == "yes":
            total += INSURANCE_FEE * len(passengers)
        total += BAG_FEE * nonfree_baggages

        methods = self.db.get("users", user_id)["payment_methods"]
        for payment in payment_methods:
            method = methods.get(payment.payment_id)
            if method is None:
                raise ToolError(f"Payment method {payment.payment_id} not found")
            if method["source"] in ("gift_card", "certificate") and method["amount"] < payment.amount:
                raise ToolError(f"Not enough balance in payment method {payment.payment_id}")
        paid = sum(p.amount for p in payment_methods)
        if paid != total:
            raise ToolError(f"Payment amount does not add up, total price is {total}, but paid {paid}")

        user = self.db.edit("users", user_id)
        for payment in payment_methods:
            method = user["payment_methods"].get(payment.payment_id, {"source": "certificate"})
            if method["source"] == "gift_card":
                method["amount"] -= payment.amount
            elif method["source"] == "certificate":
                # a certificate is used up whole; listing it twice fails half-way, as in tau2
                if user["payment_methods"].pop(payment.payment_id, None) is None:
                    raise ToolError(repr(payment.payment_id))
        for info, segment in zip(flights, segments):
            seats = self.db.edit("flights", segment["flight_number"])["dates"][info.date]["available_seats"]
            seats[cabin] -= len(passengers)
        reservation = {
            "reservation_id": reservation_id, "user_id": user_id, "origin": origin, "destination": destination,
            "flight_type": flight_type, "cabin": cabin, "flights": segments,
            "passengers": [p.model_dump() for p in passengers],
            "payment_history": [p.model_dump() for p in payment_methods],
            "created_at": NOW, "total_baggages": total_baggages, "nonfree_baggages": nonfree_baggages,
            "insurance": insurance, "status": None,
        }
        self.db.put("reservations", reservation_id, reservation)
        user["reservations"].append(reservation_id)
        return reservation

    @tool(GENERIC)
    def calculate(self, expression: str) -> str:
        """Calculate the result of an arithmetic expression, rounded to 2 decimals.

        Args:
            expression: The expression, such as '2 + 2'. It may contain numbers, the operators +, -, *, /, parentheses and spaces.
        """
        return calculate_expression(expression)

    @tool(WRITE)
    def cancel_reservation(self, reservation_id: str) -> dict:
        """Cancel a whole reservation and refund every payment made for it to its original method.

        Args:
            reservation_id: The reservation ID, such as 'ZFA04Y'.
        """
        reservation = self.db.edit("reservations", self._reservation_id(reservation_id))
        refunds = [{"payment_id": p["payment_id"], "amount": -p["amount"]} for p in reservation["payment_history"]]
        reservation["payment_history"].extend(refunds)
        reservation["status"] = "cancelled"
        return reservation

    @tool(READ)
    def get_reservation_details(self, reservation_id: str) -> dict:
        """Get the details of a reservation: flights, passengers, payments, baggage, insurance.

        Args:
            reservation_id: The reservation ID, such as '8JX2WO'.
        """
        return self.db.get("reservations", self._reservation_id(reservation_id))

    @tool(READ)
    def get_user_details(self, user_id: str) -> dict:
        """Get the details of a user: profile, payment methods, saved passengers, membership and reservation IDs.

        Args:
            user_id: The user ID, such as 'sara_doe_496'.
        """
        return self.db.get("users", self._user_id(user_id))

    @tool(READ)
    def list_all_airports(self) -> list:
        """List every airport served, with its IATA code and city."""
        return [{"iata": iata, "city": city} for iata, city in AIRPORTS]

    @tool(READ)
    def search_direct_flight(self, origin: str, destination: str, date: str) -> list:
        """Search the direct flights between two airports that can be booked on a date.

        Args:
            origin: IATA code of the origin airport, such as 'JFK'.
            destination: IATA code of the destination airport, such as 'LAX'.
            date: The date of the flight, 'YYYY-MM-DD', such as '2024-01-01'.
        """
        return self._direct_flights(date, origin, destination)

    @tool(READ)
    def search_onestop_flight(self, origin: str, destination: str, date: str) -> list:
        """Search the bookable one-stop connections between two airports departing on a date.

        Each result is a pair [first flight, second flight]; each flight carries its own date.

        Args:
            origin: IATA code of the origin airport, such as 'JFK'.
            destination: IATA code of the destination airport, such as 'LAX'.
            date: The departure date, 'YYYY-MM-DD', such as '2024-05-01'.
        """
        pairs = []
        for first in self._direct_flights(date, origin, None):
            first["date"] = date
            # tau2 builds the next day's date this way (May only, no zero padding); kept for parity
            next_date = f"2024-05-{int(date[-2:]) + 1}" if "+1" in first["scheduled_arrival_time_est"] else date
            for second in self._direct_flights(next_date, first["destination"], destination, first["scheduled_arrival_time_est"]):
                second["date"] = next_date
                pairs.append([first, second])
        return pairs

    @tool(WRITE)
    def send_certificate(self, user_id: str, amount: int) -> str:
        """Add a travel certificate of the given amount to a user's payment methods. Be careful!

        Args:
            user_id: The ID of the user to receive the certificate, such as 'sara_doe_496'.
            amount: The amount of the certificate in dollars.
        """
        key = self._user_id(user_id)
        methods = self.db.get("users", key)["payment_methods"]
        certificate_id = next((c for c in NEW_CERTIFICATE_IDS if c not in methods), None)
        if certificate_id is None:
            raise ToolError("Too many certificates")
        self.db.edit("users", key)["payment_methods"][certificate_id] = {"source": "certificate", "id": certificate_id, "amount": float(amount)}
        return f"Certificate {certificate_id} added to user {user_id} with amount {amount}."

    @tool(GENERIC)
    def transfer_to_human_agents(self, summary: str) -> str:
        """Hand the user over to a human agent, with a summary of the user's issue.

        Only transfer when the user explicitly asks for a human agent, or when the policy and
        the available tools do not allow you to solve the user's issue.

        Args:
            summary: A summary of the user's issue for the human agent.
        """
        return "Transfer successful"

    @tool(WRITE)
    def update_reservation_baggages(self, reservation_id: str, total_baggages: int, nonfree_baggages: int, payment_id: str) -> dict:
        """Change the number of checked bags on a reservation, charging 50 per added non-free bag.

        Args:
            reservation_id: The reservation ID, such as 'ZFA04Y'.
            total_baggages: The new total number of checked bags.
            nonfree_baggages: The new number of paid bags.
            payment_id: The payment method from the user's profile to charge, such as 'credit_card_7815826' or 'gift_card_7815826' (not a certificate).
        """
        key = self._reservation_id(reservation_id)
        user_id = self._user_id(self.db.get("reservations", key)["user_id"])
        added = max(0, nonfree_baggages - self.db.get("reservations", key)["nonfree_baggages"])
        payment = self._charge_for_update(user_id, payment_id, BAG_FEE * added)
        reservation = self.db.edit("reservations", key)
        if payment is not None:
            reservation["payment_history"].append(payment)
        reservation["total_baggages"] = total_baggages
        reservation["nonfree_baggages"] = nonfree_baggages
        return reservation

    @tool(WRITE)
    def update_reservation_flights(self, reservation_id: str, cabin: CabinClass, flights: list[FlightInfo], payment_id: str) -> dict:
        """Change the flights and/or cabin of a reservation, charging or refunding the price difference.

        Args:
            reservation_id: The reservation ID, such as 'ZFA04Y'.
            cabin: The cabin class of the whole reservation after the change.
            flights: Every flight segment of the ENTIRE new reservation, each with flight number and date; include the segments that do not change too.
            payment_id: The payment method from the user's profile for the difference, such as 'credit_card_7815826' or 'gift_card_7815826' (not a certificate).
        """
        key = self._reservation_id(reservation_id)
        current = self.db.get("reservations", key)
        user_id = self._user_id(current["user_id"])
        travellers = len(current["passengers"])

        segments, total = [], 0
        for info in flights:
            flight = self.db.get("flights", self._flight_number(info.flight_number))
            kept = next((s for s in current["flights"] if cabin == current["cabin"]
                         and s["flight_number"] == flight["flight_number"] and s["date"] == info.date), None)
            if kept is not None:  # an unchanged segment keeps the price it was bought at
                segments.append(dict(kept))
                total += kept["price"] * travellers
                continue
            day = self._bookable(flight["flight_number"], info.date, cabin, travellers)
            segments.append({"flight_number": flight["flight_number"], "origin": flight["origin"],
                             "destination": flight["destination"], "date": info.date, "price": day["prices"][cabin]})
            total += segments[-1]["price"] * travellers
        total -= sum(s["price"] for s in current["flights"]) * travellers

        payment = self._charge_for_update(user_id, payment_id, total)
        reservation = self.db.edit("reservations", key)
        if payment is not None:
            reservation["payment_history"].append(payment)
        reservation["flights"] = segments
        reservation["cabin"] = cabin
        return reservation

    @tool(WRITE)
    def update_reservation_passengers(self, reservation_id: str, passengers: list[Passenger]) -> dict:
        """Replace the passenger details of a reservation; the number of passengers cannot change.

        Args:
            reservation_id: The reservation ID, such as 'ZFA04Y'.
            passengers: Every passenger of the reservation, each with first name, last name and date of birth.
        """
        key = self._reservation_id(reservation_id)
        if len(passengers) != len(self.db.get("reservations", key)["passengers"]):
            raise ToolError("Number of passengers does not match")
        reservation = self.db.edit("reservations", key)
        reservation["passengers"] = [p.model_dump() for p in passengers]
        return reservation

    @tool(READ)
    def get_flight_status(self, flight_number: str, date: str) -> str:
        """Get the status of a flight on a date (such as 'available', 'delayed', 'on time', 'flying', 'landed', 'cancelled').

        Args:
            flight_number: The flight number, such as 'HAT001'.
            date: The date of the flight, 'YYYY-MM-DD'.
        """
        return self._flight_date(flight_number, date)["status"]


def domain() -> Domain:
    return Domain(name="airline", assistant_tools=AirlineTools, load_db=_load_db, policy=_policy)
