"""The telecom user's phone: device settings, surroundings, and the physics that decide
whether service, mobile data, speed and MMS work (tau2's dual-control side).

The user database is two tables, ``device`` and ``surroundings``, each keyed by field
name, so a task's delta holds only the settings it changed. tau2's ``user_data``
(``{"device": {...}, "surroundings": {...}}``) deep-merges into it unchanged.
"""
import copy
from typing import Any, Literal

import pydantic
import tomllib

from ..env import DATA_DIR, READ, WRITE, Toolkit, tool

USER_DB_PATH = DATA_DIR / "domains" / "telecom" / "user_db.toml"

NETWORK_MODES = ("4g_5g_preferred", "4g_only", "3g_only", "2g_only")
NETWORK_STATUSES = ("connected", "searching", "no_service", "emergency_only")
SIM_STATUSES = ("active", "missing", "locked_pin", "locked_puk")

_APN_DEFAULT = {
    "apn_name": "internet",
    "reset_at_reboot": False,
    "mms_apn": "mms",
    "mmsc_url": "http://mms.carrier.com/mms/wapenc",
    "mms_proxy": None,
    "mms_port": None,
}
_PERMISSIONS = ("sms", "storage", "phone", "network")
_DEVICE_DEFAULT: dict[str, Any] = {
    "sim_card_status": "active",
    "sim_card_missing": False,
    "airplane_mode": False,
    "network_signal_strength": "good",
    "network_technology_connected": "5G",
    "network_connection_status": "connected",
    "battery_level": 80,
    "data_enabled": True,
    "roaming_enabled": False,
    "network_mode_preference": "4g_5g_preferred",
    "active_apn_settings": _APN_DEFAULT,
    "wifi_enabled": False,
    "wifi_connected": False,
    "wifi_ssid": None,
    "wifi_signal_strength": "none",
    "wifi_calling_enabled": False,
    "wifi_calling_mms_over_wifi": False,
    "data_saver_mode": False,
    "vpn_enabled_setting": False,
    "vpn_connected": False,
    "vpn_details": None,
    "app_statuses": {
        "messaging": {"app_name": "messaging", "permissions": {"sms": True, "storage": True, "phone": True, "network": False}},
        "browser": {"app_name": "browser", "permissions": {"sms": False, "storage": True, "phone": False, "network": True}},
    },
}
_SURROUNDINGS_DEFAULT: dict[str, Any] = {
    "name": None,
    "phone_number": None,
    "is_abroad": False,
    "roaming_allowed": False,
    "signal_strength": {"2G": "poor", "3G": "fair", "4G": "good", "5G": "excellent"},
    "mobile_data_usage_exceeded": False,
    "line_active": True,
    "payment_request": None,
}
_DEFAULT_VPN = {"server_address": "192.168.1.1", "protocol": "OpenVPN", "server_performance": "excellent"}

# Speed model (Mbps): midpoint of the technology's range, scaled by signal quality.
_TECH_SPEED = {"2G": (0.1, 0.4), "3G": (1.0, 5.0), "4G": (10.0, 100.0), "5G": (50.0, 500.0), "none": (0.0, 0.0)}
_SIGNAL_FACTOR = {"poor": 0.2, "fair": 0.5, "good": 0.8, "excellent": 1.0, "none": 0.0}
_MODE_TECH = {"4g_only": "4G", "3g_only": "3G", "2g_only": "2G"}
_SIGNAL_ICON = {
    "none": "📵 No Signal",
    "poor": "📶¹ Poor",
    "fair": "📶² Fair",
    "good": "📶³ Good",
    "excellent": "📶⁴ Excellent",
}
_SPEED_ADVICE = {
    "Very Poor": "Connection is very slow. Basic web browsing might be difficult.",
    "Poor": "Connection is slow. Web browsing may be sluggish, streaming difficult.",
    "Fair": "Connection is okay for web browsing and some standard definition streaming.",
    "Good": "Connection is good for most activities, including HD streaming.",
    "Excellent": "Connection is very fast.",
}


class ApnSettings(pydantic.BaseModel):
    """An APN (access point) configuration; omitted fields take the carrier defaults."""

    model_config = pydantic.ConfigDict(extra="forbid")

    apn_name: Literal["internet", "broken"] = pydantic.Field("internet", description="Name of the data APN.")
    reset_at_reboot: bool = pydantic.Field(False, description="Whether the APN settings reset to defaults at the next reboot.")
    mms_apn: str | None = pydantic.Field("mms", description="APN used for MMS traffic.")
    mmsc_url: str | None = pydantic.Field(
        "http://mms.carrier.com/mms/wapenc", description="URL of the MMS service centre (needed for picture messages)."
    )
    mms_proxy: str | None = pydantic.Field(None, description="Proxy server for MMS traffic, if the network needs one.")
    mms_port: int | None = pydantic.Field(None, description="Port of the MMS proxy.")


def load_user_db() -> dict[str, dict[str, Any]]:
    """The default phone and surroundings (tau2's ``user_db.toml`` over the model defaults)."""
    with open(USER_DB_PATH, "rb") as f:
        raw = tomllib.load(f)
    device = copy.deepcopy(_DEVICE_DEFAULT)
    given = raw.get("device", {})
    for key, value in given.items():
        if key == "active_apn_settings":
            device[key] = {**_APN_DEFAULT, **value}
        elif key == "app_statuses":
            device[key] = {
                name: {"app_name": app.get("app_name", name),
                       "permissions": {p: bool(app.get("permissions", {}).get(p, False)) for p in _PERMISSIONS}}
                for name, app in value.items()
            }
        else:
            device[key] = value
    surroundings = {**copy.deepcopy(_SURROUNDINGS_DEFAULT), **raw.get("surroundings", {})}
    # State reads an absent key as None, so None-valued fields are left out of the base.
    return {
        "device": {k: v for k, v in device.items() if v is not None},
        "surroundings": {k: v for k, v in surroundings.items() if v is not None},
    }


def _enum_repr(enum_name: str, value: str) -> str:
    return f"<{enum_name}.{value.upper()}: '{value}'>"


class TelecomUserTools(Toolkit):
    """The user's phone. Tools are what the simulated user can do on it; the other public
    methods are tau2's initialization actions (fault injection) and assertions."""

    side = "user"

    # --- state access ------------------------------------------------------------------

    def _dev(self, key: str) -> Any:
        return self.db.get("device", key)

    def _set_dev(self, key: str, value: Any) -> None:
        self._write("device", key, value)

    def _env(self, key: str) -> Any:
        return self.db.get("surroundings", key)

    def _set_env(self, key: str, value: Any) -> None:
        self._write("surroundings", key, value)

    def _write(self, table: str, key: str, value: Any) -> None:
        if self.db.get(table, key) == value:
            return  # keeps the delta free of no-op writes (sync runs after every step)
        if self.db.base.get(table, {}).get(key) == value:
            self.db.delta.get(table, {}).pop(key, None)  # back to the default: nothing to carry
        elif value is None:
            self.db.delete(table, key)
        else:
            self.db.put(table, key, value)

    def _disconnect_wifi(self) -> None:
        self._set_dev("wifi_connected", False)
        self._set_dev("wifi_ssid", None)
        self._set_dev("wifi_signal_strength", "none")

    def _no_service(self) -> None:
        self._set_dev("network_connection_status", "no_service")
        self._set_dev("network_technology_connected", "none")
        self._set_dev("network_signal_strength", "none")

    # --- physics -----------------------------------------------------------------------

    def simulate_network_search(self) -> None:
        """Re-attaches to the cellular network: picks technology and signal from the mode
        preference and the surroundings; no service without an active SIM and line, in
        airplane mode, or with a broken APN."""
        if self._sim_status() == "active":
            signals = self._env("signal_strength") or {}
            mode = self._dev("network_mode_preference")
            if mode == "4g_5g_preferred":
                tech = "4G" if signals.get("5G", "none") == "none" else "5G"
            else:
                tech = _MODE_TECH.get(mode, "4G")
            self._set_dev("network_connection_status", "connected")
            self._set_dev("network_technology_connected", tech)
            self._set_dev("network_signal_strength", signals.get(tech, "none"))
        else:
            self._no_service()
        if (
            self._dev("airplane_mode")
            or self._dev("active_apn_settings")["apn_name"] == "broken"
            or not self._env("line_active")
        ):
            self._no_service()

    def _sim_status(self) -> str:
        return "missing" if self._dev("sim_card_missing") else self._dev("sim_card_status")

    def _mobile_data_working(self) -> bool:
        if self._dev("airplane_mode") or self._dev("network_signal_strength") == "none":
            return False
        if self._dev("network_connection_status") == "no_service":
            return False
        if self._env("is_abroad") and not (self._dev("roaming_enabled") and self._env("roaming_allowed")):
            return False
        return bool(self._dev("data_enabled")) and not self._env("mobile_data_usage_exceeded")

    def _speed(self) -> tuple[float | None, str]:
        if not self._mobile_data_working():
            return None, "No Connection"
        factor = 1.0
        vpn = self._dev("vpn_details")
        if self._dev("vpn_connected") and vpn and vpn.get("server_performance") == "poor":
            factor = 0.1
        if self._dev("data_saver_mode"):
            factor *= 0.2
        low, high = _TECH_SPEED.get(self._dev("network_technology_connected"), (0.0, 0.0))
        speed = round((low + high) / 2.0 * _SIGNAL_FACTOR.get(self._dev("network_signal_strength"), 0.0) * factor, 2)
        if speed < 1:
            return speed, "Very Poor"
        if speed < 5:
            return speed, "Poor"
        if speed < 25:
            return speed, "Fair"
        if speed < 100:
            return speed, "Good"
        return speed, "Excellent"

    def _can_send_mms(self) -> bool:
        # MMS travels over the mobile data path even when Wi-Fi is on.
        if not self._mobile_data_working() or self._dev("network_technology_connected") == "2G":
            return False
        # The carrier does not support MMS over Wi-Fi calling.
        if self._dev("wifi_calling_enabled") and self._dev("wifi_calling_mms_over_wifi"):
            return False
        if self._dev("active_apn_settings").get("mmsc_url") is None:
            return False
        app = (self._dev("app_statuses") or {}).get("messaging")
        return bool(app and app["permissions"].get("storage") and app["permissions"].get("sms"))

    def _status_bar(self) -> str:
        parts = []
        if self._dev("airplane_mode"):
            parts.append("✈️ Airplane Mode")
        else:
            parts.append(_SIGNAL_ICON.get(self._dev("network_signal_strength"), "📵 No Signal"))
            tech = self._dev("network_technology_connected")
            if tech != "none":
                parts.append(tech)
            if self._dev("data_enabled") and tech != "none":
                parts.append("📱 Data Enabled")
                if self._dev("data_saver_mode"):
                    parts.append("🔽 Data Saver")
            else:
                parts.append("📵 Data Disabled")
        if self._dev("wifi_enabled") and self._dev("wifi_connected"):
            ssid = self._dev("wifi_ssid")
            parts.append(f"📡 Connected to {ssid}" if ssid else "📡 Enabled")
        if self._dev("vpn_connected"):
            parts.append("🔒 VPN Connected")
        parts.append(f"🔋 {self._dev('battery_level')}%")
        return " | ".join(parts)

    def _with_status_bar(self, message: str) -> str:
        return f"{message}\nStatus Bar: {self._status_bar()}"

    # --- user info (initialization) ----------------------------------------------------

    def set_user_info(self, name: str, phone_number: str) -> None:
        self._set_env("name", name)
        self._set_env("phone_number", phone_number)

    def set_user_location(self, abroad: bool) -> None:
        self._set_env("is_abroad", abroad)

    # --- status and network --------------------------------------------------------------

    @tool(READ)
    def check_status_bar(self) -> str:
        """Shows the icons in the phone's status bar at the top of the screen: signal strength,
        network type, whether mobile data is on (and Data Saver), Wi-Fi, VPN and battery level."""
        return f"Status Bar: {self._status_bar()}"

    @tool(READ)
    def check_network_status(self) -> str:
        """Shows the phone's cellular and Wi-Fi connection details: airplane mode, SIM status,
        cellular connection, signal and network type, mobile data, data roaming and Wi-Fi."""
        wifi_connected = self._dev("wifi_connected")
        lines = [
            f"Airplane Mode: {'ON' if self._dev('airplane_mode') else 'OFF'}",
            f"SIM Card Status: {self._sim_status()}",
            f"Cellular Connection: {self._dev('network_connection_status')}",
            f"Cellular Signal: {self._dev('network_signal_strength')}",
            f"Cellular Network Type: {self._dev('network_technology_connected')}",
            f"Mobile Data Enabled: {'Yes' if self._dev('data_enabled') else 'No'}",
            f"Data Roaming Enabled: {'Yes' if self._dev('roaming_enabled') else 'No'}",
            f"Wi-Fi Radio: {'ON' if self._dev('wifi_enabled') else 'OFF'}",
            f"Wi-Fi Connected: {'Yes' if wifi_connected else 'No'}",
        ]
        if wifi_connected:
            lines.append(f"Connected Wi-Fi Network: {self._dev('wifi_ssid')}")
        return "\n".join(lines)

    @tool(READ)
    def check_network_mode_preference(self) -> str:
        """Shows which cellular network types the phone prefers to use."""
        return f"Network Mode Preference: {self._dev('network_mode_preference')}"

    @tool(WRITE)
    def set_network_mode_preference(self, mode: str) -> str:
        """Chooses which cellular network types the phone prefers (5G, 4G/LTE, 3G or 2G).
        Faster networks give faster data but may use more battery. The phone searches for a
        network again afterwards.

        Args:
            mode: One of "4g_5g_preferred", "4g_only", "3g_only" or "2g_only".
        """
        if mode not in NETWORK_MODES:
            return self._with_status_bar(
                f"Failed to set network mode: '{mode}' is not a valid option. Please use one of: {', '.join(NETWORK_MODES)}"
            )
        self._set_dev("network_mode_preference", mode)
        self.simulate_network_search()
        return self._with_status_bar(f"Preferred Network Mode set to: {mode}")

    @tool(READ)
    def run_speed_test(self) -> str:
        """Measures the phone's current mobile internet download speed and says what it is good for."""
        speed, desc = self._speed()
        if speed is None:
            return f"Speed test failed: {desc or 'Could not determine speed'}."
        return f"Speed Test Result: {speed:.2f} Mbps ({desc}). {_SPEED_ADVICE.get(desc, '')}"

    # --- airplane mode -------------------------------------------------------------------

    @tool(WRITE)
    def toggle_airplane_mode(self) -> str:
        """Turns Airplane Mode on or off. When on, all radios (cellular, Wi-Fi, Bluetooth) are disconnected."""
        return self._with_status_bar(f"Airplane Mode is now {'ON' if self._toggle_airplane_mode() else 'OFF'}.")

    def _toggle_airplane_mode(self) -> bool:
        was_on = self._dev("airplane_mode")
        self._set_dev("airplane_mode", not was_on)
        if was_on:
            self._set_dev("network_connection_status", "searching")
            if self._dev("wifi_enabled"):
                self._disconnect_wifi()
        else:
            self._disconnect_wifi()
            self._disconnect_vpn()
        self.simulate_network_search()
        return not was_on

    def turn_airplane_mode_on(self) -> str:
        if not self._toggle_airplane_mode():
            self._toggle_airplane_mode()
        return "Airplane Mode is now ON."

    def turn_airplane_mode_off(self) -> str:
        # tau2 toggles even when already off (so an on-off cycle drops Wi-Fi and VPN).
        if self._toggle_airplane_mode():
            self._toggle_airplane_mode()
        return "Airplane Mode is now OFF."

    # --- SIM -----------------------------------------------------------------------------

    @tool(READ)
    def check_sim_status(self) -> str:
        """Shows whether the SIM card is working: active, missing, or locked by a PIN or PUK code."""
        status = self._sim_status()
        return {
            "active": "Your SIM card is active and working.",
            "missing": "No SIM card detected in the phone.",
            "locked_pin": "The SIM card is locked with a PIN code.",
            "locked_puk": "The SIM card is locked with a PUK code.",
        }.get(status, f"Unknown SIM status: {status}")

    @tool(WRITE)
    def reseat_sim_card(self) -> str:
        """Takes the SIM card out and puts it back in, which can fix a SIM that is not recognised."""
        self._set_dev("sim_card_missing", False)
        self.simulate_network_search()
        return self._with_status_bar("SIM card re-seated successfully.")

    def unseat_sim_card(self) -> str:
        self._set_dev("sim_card_missing", True)
        self.simulate_network_search()
        return "SIM card un-seated successfully."

    def lock_sim_card(self, mode: Literal["pin", "puk"]) -> str:
        if mode not in ("pin", "puk"):
            raise ValueError(f"lock_sim_card: mode must be 'pin' or 'puk', got {mode!r}")
        self._set_dev("sim_card_status", f"locked_{mode}")
        self.simulate_network_search()
        return f"SIM card locked successfully in {mode} mode."

    # --- mobile data and roaming -----------------------------------------------------------

    @tool(WRITE)
    def toggle_data(self) -> str:
        """Turns mobile (cellular) data on or off; it carries internet traffic when Wi-Fi is not available."""
        return self._with_status_bar(f"Mobile Data is now {'ON' if self._toggle('data_enabled') else 'OFF'}.")

    def _toggle(self, key: str, search: bool = True) -> bool:
        new_state = not self._dev(key)
        self._set_dev(key, new_state)
        if search:
            self.simulate_network_search()
        return new_state

    def turn_data_on(self) -> str:
        self._set_dev("data_enabled", True)
        return "Data connection restored."

    def turn_data_off(self) -> str:
        if self._toggle("data_enabled"):
            self._toggle("data_enabled")
        return "Data connection broken."

    @tool(WRITE)
    def toggle_roaming(self) -> str:
        """Turns Data Roaming on or off. When on, the phone may use mobile data on networks outside the carrier's own coverage (e.g. abroad)."""
        return self._with_status_bar(f"Data Roaming is now {'ON' if self._toggle('roaming_enabled') else 'OFF'}.")

    def turn_roaming_on(self) -> str:
        if not self._toggle("roaming_enabled"):
            self._toggle("roaming_enabled")
        return "Data Roaming is now ON."

    def turn_roaming_off(self) -> str:
        if self._toggle("roaming_enabled"):
            self._toggle("roaming_enabled")
        return "Data Roaming is now OFF."

    @tool(READ)
    def check_data_restriction_status(self) -> str:
        """Shows whether a data-limiting feature (Data Saver mode) is on."""
        return "Data Saver mode is ON (limits data usage)." if self._dev("data_saver_mode") else "Data Saver mode is OFF."

    @tool(WRITE)
    def toggle_data_saver_mode(self) -> str:
        """Turns Data Saver mode on or off. When on, it limits data usage, which can slow the connection."""
        return self._with_status_bar(
            f"Data Saver Mode is now {'ON' if self._toggle('data_saver_mode', search=False) else 'OFF'}."
        )

    def turn_data_saver_mode_on(self) -> str:
        self._set_dev("data_saver_mode", True)
        return "Data Saver Mode is now ON."

    def turn_data_saver_mode_off(self) -> str:
        self._set_dev("data_saver_mode", False)
        return "Data Saver Mode is now OFF."

    # --- APN -----------------------------------------------------------------------------

    @tool(READ)
    def check_apn_settings(self) -> str:
        """Shows the APN settings the phone uses to reach the carrier's data network: the APN name and the MMSC URL used for picture messages."""
        apn = self._dev("active_apn_settings")
        return (
            f"Current APN Name: {apn.get('apn_name') or 'Not Set'}\n"
            f"MMSC URL (for picture messages): {apn.get('mmsc_url') or 'Not Set'}\n"
            "(These are technical settings, usually best left unchanged.)"
        )

    @tool(WRITE)
    def set_apn_settings(self, apn_settings: ApnSettings) -> str:
        """Replaces the phone's APN settings; fields left out take the carrier defaults.

        Args:
            apn_settings: The new APN configuration.
        """
        if isinstance(apn_settings, dict):
            apn_settings = ApnSettings(**apn_settings)
        settings = apn_settings.model_dump()
        self._set_dev("active_apn_settings", settings)
        self.simulate_network_search()
        return self._with_status_bar(f"APN settings set to: {settings['apn_name']}")

    @tool(WRITE)
    def reset_apn_settings(self) -> str:
        """Resets the APN settings to the carrier defaults; the reset takes effect at the next reboot."""
        self.db.edit("device", "active_apn_settings")["reset_at_reboot"] = True
        self.simulate_network_search()
        return self._with_status_bar("APN settings will reset at reboot.")

    def break_apn_settings(self) -> str:
        self.db.edit("device", "active_apn_settings")["apn_name"] = "broken"
        self.simulate_network_search()
        return "APN settings broken. Please call reset_apn_settings() to fix."

    def break_apn_mms_setting(self) -> str:
        self.db.edit("device", "active_apn_settings")["mmsc_url"] = None
        return "APN MMS setting broken. Please call reset_apn_settings() to fix."

    # --- Wi-Fi and Wi-Fi calling -----------------------------------------------------------

    @tool(READ)
    def check_wifi_status(self) -> str:
        """Shows whether Wi-Fi is on, which network the phone is connected to (if any) and the signal strength."""
        if not self._dev("wifi_enabled"):
            return "Wi-Fi is turned OFF."
        if self._dev("wifi_connected"):
            return (
                f"Wi-Fi is ON and connected to '{self._dev('wifi_ssid')}'. "
                f"Signal strength: {self._dev('wifi_signal_strength')}."
            )
        return "Wi-Fi is ON but not connected to any network."

    @tool(WRITE)
    def toggle_wifi(self) -> str:
        """Turns the Wi-Fi radio on or off (not possible while Airplane Mode is on)."""
        if self._dev("airplane_mode"):
            return self._with_status_bar("Cannot change Wi-Fi settings while Airplane Mode is ON.")
        new_state = self._toggle("wifi_enabled", search=False)
        if not new_state:
            self._disconnect_wifi()
        return self._with_status_bar(f"Wi-Fi is now {'ON' if new_state else 'OFF'}.")

    @tool(READ)
    def check_wifi_calling_status(self) -> str:
        """Shows whether Wi-Fi Calling (calls over Wi-Fi instead of the cellular network) is on."""
        return f"Wi-Fi Calling is currently turned {'ON' if self._dev('wifi_calling_enabled') else 'OFF'}."

    @tool(WRITE)
    def toggle_wifi_calling(self) -> str:
        """Turns Wi-Fi Calling on or off. It lets the phone make and receive calls over Wi-Fi, which helps where the cellular signal is weak."""
        return self._with_status_bar(
            f"Wi-Fi Calling is now {'ON' if self._toggle('wifi_calling_enabled', search=False) else 'OFF'}."
        )

    def set_wifi_calling(self, enabled: bool, mms_over_wifi: bool | None = None) -> str:
        self._set_dev("wifi_calling_enabled", enabled)
        msg = f"Wi-Fi Calling is now {'ON' if enabled else 'OFF'}."
        if mms_over_wifi is not None:
            self._set_dev("wifi_calling_mms_over_wifi", mms_over_wifi)
            msg += f"\nMMS over Wi-Fi is now {'ON' if mms_over_wifi else 'OFF'}."
        return msg

    # --- VPN -----------------------------------------------------------------------------

    @tool(READ)
    def check_vpn_status(self) -> str:
        """Shows whether a VPN is set up and connected, with the connection details when it is."""
        if self._dev("vpn_connected"):
            details = self._dev("vpn_details")
            if details:
                shown = ", ".join(
                    f"'{k}': " + (_enum_repr("PerformanceLevel", v) if k == "server_performance" else repr(v))
                    for k, v in details.items()
                )
                return f"VPN is ON and connected. Details: {{{shown}}}"
            return "VPN is ON and connected (no specific details available)."
        if self._dev("vpn_enabled_setting"):
            return "VPN is turned ON in settings, but currently not connected."
        return "VPN is turned OFF."

    @tool(WRITE)
    def connect_vpn(self) -> str:
        """Connects the phone's VPN (virtual private network)."""
        if self._dev("vpn_connected"):
            return "VPN already connected."
        self._set_dev("vpn_connected", True)
        self._set_dev("vpn_details", dict(_DEFAULT_VPN))
        return self._with_status_bar("VPN connected successfully.")

    @tool(WRITE)
    def disconnect_vpn(self) -> str:
        """Disconnects the active VPN, so traffic no longer goes through the VPN server (this can change speed or what content is reachable)."""
        message = "VPN disconnected successfully." if self._disconnect_vpn() else "No active VPN connection to disconnect."
        return self._with_status_bar(message)

    def _disconnect_vpn(self) -> bool:
        if not self._dev("vpn_connected"):
            return False
        self._set_dev("vpn_connected", False)
        self._set_dev("vpn_details", None)
        return True

    def break_vpn(self) -> str:
        """Connects a VPN whose server performs poorly (slow mobile data)."""
        self.connect_vpn()
        self.db.edit("device", "vpn_details")["server_performance"] = "poor"
        return "VPN connection broken."

    # --- apps ----------------------------------------------------------------------------

    def _apps(self) -> dict[str, Any]:
        return self._dev("app_statuses") or {}

    @tool(READ)
    def check_installed_apps(self) -> str:
        """Lists the apps installed on the phone."""
        return f"The following apps are installed on the phone: {', '.join(self._apps())}"

    @tool(READ)
    def check_app_status(self, app_name: str) -> str:
        """Shows details about one app, including the permissions it has been granted.

        Args:
            app_name: The app's name, as listed by check_installed_apps.
        """
        app = self._apps().get(app_name)
        if app is None:
            return f"App '{app_name}' not found on this phone."
        granted = self._granted(app)
        lines = [f"Status for App: {app_name}"]
        if not granted:
            lines.append(" - Permissions: None granted.")
        else:
            lines.append(" - Permissions Granted:")
            lines.extend(f"   - {p}" for p in granted)
        return "\n".join(lines)

    @staticmethod
    def _granted(app: dict[str, Any]) -> list[str]:
        return [name.replace("_", " ").lower() for name, allowed in app["permissions"].items() if allowed]

    @tool(READ)
    def check_app_permissions(self, app_name: str) -> str:
        """Shows which permissions (e.g. sms, storage, phone, network) an app currently has.

        Args:
            app_name: The app's name, as listed by check_installed_apps.
        """
        app = self._apps().get(app_name)
        if app is None:
            return f"App '{app_name}' not found on this phone."
        granted = self._granted(app)
        if not granted:
            return f"App '{app_name}' currently has no permissions granted."
        return f"App '{app_name}' has permission for: {', '.join(granted)}."

    @tool(WRITE)
    def grant_app_permission(self, app_name: str, permission: str) -> str:
        """Grants an app one permission (such as sms, storage, phone or network) that some of its functions need.

        Args:
            app_name: The app to grant the permission to.
            permission: The permission to grant, in lowercase.
        """
        ok, message = self._set_permission(app_name, permission, True)
        return self._with_status_bar(f"{'Success. ' if ok else 'Error. '}{message}")

    def remove_app_permission(self, app_name: str, permission: str) -> list:
        return list(self._set_permission(app_name, permission, False))

    def _set_permission(self, app_name: str, permission: str, allowed: bool) -> tuple[bool, str]:
        permission = permission.lower()
        app = self._apps().get(app_name)
        if app is None:
            verb = "grant" if allowed else "remove"
            return False, f"App '{app_name}' not found. Cannot {verb} permission."
        if permission not in app["permissions"]:
            extra = f", available permissions: {list(app['permissions'])}" if allowed else "."
            return False, f"Permission '{permission}' not tracked for app '{app_name}'{extra}"
        self.db.edit("device", "app_statuses")[app_name]["permissions"][permission] = allowed
        if allowed:
            return True, f"Permission '{permission}' granted to app '{app_name}'."
        return True, f"Permission '{permission}' removed from app '{app_name}'."

    # --- MMS, reboot -----------------------------------------------------------------------

    @tool(READ)
    def can_send_mms(self) -> str:
        """Checks whether the default messaging app can send MMS (picture) messages."""
        if self._can_send_mms():
            return "Your messaging app can send MMS messages."
        return "Your messaging app cannot send MMS messages."

    @tool(WRITE)
    def reboot_device(self) -> str:
        """Restarts the phone, which restarts its network services and applies pending APN resets; this clears many temporary glitches."""
        lines = []
        if self._dev("active_apn_settings").get("reset_at_reboot"):
            lines.append("Resetting APN settings...")
            self._set_dev("active_apn_settings", dict(_APN_DEFAULT))
        lines.append("Restarting network services...")
        self._set_dev("network_connection_status", "searching")
        self.simulate_network_search()
        return self._with_status_bar("\n".join(lines))

    # --- payments ------------------------------------------------------------------------

    @tool(READ)
    def check_payment_request(self) -> str:
        """Checks whether the agent has sent you a request to pay a bill."""
        request = self._env("payment_request")
        if request is None:
            return "No payment request has been made."
        return f"You have a payment request for bill {request['bill_id']} of {request['amount_due']} USD."

    @tool(WRITE)
    def make_payment(self) -> str:
        """Pays the bill in the payment request the agent sent you."""
        request = self._env("payment_request")
        if request is None:
            return "You do not have a payment request."
        self.db.edit("surroundings", "payment_request")["paid"] = True
        return f"Payment of {request['amount_due']} USD has been made for bill {request['bill_id']}."

    # --- assertions ----------------------------------------------------------------------

    def assert_airplane_mode_status(self, expected_status: bool) -> bool:
        return self._dev("airplane_mode") == expected_status

    def assert_service_status(self, expected_status: str) -> bool:
        if expected_status not in NETWORK_STATUSES:
            raise ValueError(f"'{expected_status}' is not a valid NetworkStatus")
        return self._dev("network_connection_status") == expected_status

    def assert_mobile_data_status(self, expected_status: bool) -> bool:
        return self._mobile_data_working() == expected_status

    def assert_mobile_roaming_status(self, expected_status: bool) -> bool:
        return self._dev("roaming_enabled") == expected_status

    def assert_mobile_data_saver_mode_status(self, expected_status: bool) -> bool:
        return self._dev("data_saver_mode") == expected_status

    def assert_internet_speed(self, expected_speed: float, expected_desc: str | None = None) -> bool:
        speed, desc = self._speed()
        speed = speed or 0.0
        if expected_desc is None:
            return speed >= expected_speed
        return speed >= expected_speed and desc.lower() == expected_desc.lower()

    def assert_internet_not_excellent(self) -> bool:
        return self._speed()[1].lower() != "excellent"

    def assert_can_send_mms(self, expected_status: bool) -> bool:
        return self._can_send_mms() == expected_status

    def assert_mobile_data_usage_exceeded(self, expected_status: bool) -> bool:
        return self._env("mobile_data_usage_exceeded") == expected_status
