"""Configuration: TOML + environment, every bad key reported with its path."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from gateway.config import load_config, parse_config
from gateway.drivers.contracts import DeviceFamily, DriverContext, DriverPlugin
from gateway.drivers.registry import DriverRegistry
from gateway.errors import ConfigError, UnknownDriverError
from gateway.labels.localization import DEFAULT_LOCALE
from gateway.shelves.config import SlotConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "gateway.example.toml"


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: str
    rate_hz: float = Field(5.0, gt=0)


def _factory(context: DriverContext, options: _Options) -> object:  # never opened here
    raise AssertionError("not used")


PLUGIN = DriverPlugin(family=DeviceFamily.SCALE, options_model=_Options, factory=_factory)  # type: ignore[arg-type]


def registry() -> DriverRegistry:
    return DriverRegistry(plugins={"fake.scale": PLUGIN})


def issue_paths(exc: ConfigError) -> set[str]:
    return {issue.path for issue in exc.issues}


def test_minimal_config_gets_safe_defaults() -> None:
    settings, devices = parse_config({"store": {"id": "s1"}}, registry=registry(), environ={})
    assert settings.mqtt.tls is True
    assert settings.mqtt.allow_plaintext is False
    assert settings.storage.path == Path("/var/lib/storegw/gateway.db")
    assert devices == ()


def test_the_label_locale_is_explicit_validated_and_the_demo_is_german() -> None:
    settings, _ = parse_config({"store": {"id": "s1"}}, registry=registry(), environ={})
    assert settings.store.locale == DEFAULT_LOCALE == "en_GB"
    settings, _ = parse_config(
        {"store": {"id": "s1", "locale": "de-DE"}}, registry=registry(), environ={}
    )
    assert settings.store.locale == "de_DE"
    for bad, reason in (("xx_YY", "unknown locale"), ("pt_PT", "no label words"), ("C", "")):
        with pytest.raises(ConfigError) as caught:
            parse_config({"store": {"id": "s1", "locale": bad}}, registry=registry(), environ={})
        assert issue_paths(caught.value) == {"store.locale"}
        assert bad in str(caught.value)
        assert reason in str(caught.value)
    demo = EXAMPLE.with_name("demo.toml")  # gateway/demo.toml links to it
    settings, _ = load_config(demo, environ={})  # the installed drivers
    assert settings.store.locale == "de_DE"


def test_every_bad_key_is_reported_with_its_path() -> None:
    data = {
        "store": {"id": "bad id!", "timezone": "Mars/Olympus"},
        "mqtt": {"port": 70000},
        "storage": {"commit_max_rows": 0},
        "bogus": 1,
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, registry=registry(), environ={})
    assert issue_paths(caught.value) == {
        "store.id",
        "store.timezone",
        "mqtt.port",
        "storage.commit_max_rows",
        "bogus",
    }
    assert "Mars/Olympus" in str(caught.value)


def test_driver_options_are_validated_by_the_drivers_own_model() -> None:
    data = {
        "store": {"id": "s1"},
        "devices": [
            {"name": "shelf-a", "driver": "fake.scale", "options": {"port": "/dev/ttyUSB0"}},
            {"name": "shelf-b", "driver": "fake.scale", "options": {"rate_hz": -1, "x": 1}},
        ],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, registry=registry(), environ={})
    assert issue_paths(caught.value) == {
        "devices.1.options.port",
        "devices.1.options.rate_hz",
        "devices.1.options.x",
    }


def test_unknown_driver_names_the_known_ones() -> None:
    data = {"store": {"id": "s1"}, "devices": [{"name": "a", "driver": "acme.esl"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, registry=registry(), environ={})
    assert issue_paths(caught.value) == {"devices.0.driver"}
    assert "fake.scale" in str(caught.value)
    assert "acme.esl" in str(caught.value)
    assert isinstance(UnknownDriverError("x", "p", "d", ["a"]), ConfigError)


def test_disabled_device_is_not_resolved() -> None:
    data = {
        "store": {"id": "s1"},
        "devices": [{"name": "a", "driver": "acme.esl", "enabled": False}],
    }
    _, devices = parse_config(data, registry=registry(), environ={})
    assert devices == ()


def test_duplicate_device_names_are_refused() -> None:
    device = {"name": "a", "driver": "fake.scale", "options": {"port": "p"}}
    with pytest.raises(ConfigError, match=r"duplicate device name 'a' \(also devices.0\)"):
        parse_config(
            {"store": {"id": "s1"}, "devices": [device, device]}, registry=registry(), environ={}
        )


def test_a_duplicate_device_still_has_its_options_checked() -> None:
    """Renaming the duplicate must not reveal a second round of errors."""
    good = {"name": "a", "driver": "fake.scale", "options": {"port": "p"}}
    bad = {"name": "a", "driver": "fake.scale", "options": {"rate_hz": -1}}
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"store": {"id": "s1"}, "devices": [good, bad]}, registry=registry(), environ={}
        )
    assert issue_paths(caught.value) == {
        "devices.1.name",
        "devices.1.options.port",
        "devices.1.options.rate_hz",
    }
    unknown = {"name": "a", "driver": "acme.nothing"}
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"store": {"id": "s1"}, "devices": [good, unknown]}, registry=registry(), environ={}
        )
    assert issue_paths(caught.value) == {"devices.1.name", "devices.1.driver"}


def test_tls_files_that_do_not_exist_are_refused(tmp_path: Path) -> None:
    present = tmp_path / "ca.pem"
    present.write_text("a CA bundle", encoding="utf-8")
    mqtt = {
        "ca_file": str(tmp_path / "missing-ca.pem"),
        "client_cert": str(tmp_path / "no-dir" / "store.crt"),
        "client_key": str(tmp_path),  # a directory
    }
    with pytest.raises(ConfigError) as caught:
        parse_config({"store": {"id": "s1"}, "mqtt": mqtt}, registry=registry(), environ={})
    assert issue_paths(caught.value) == {"mqtt.ca_file", "mqtt.client_cert", "mqtt.client_key"}
    message = str(caught.value)
    assert f"{tmp_path / 'missing-ca.pem'}: no such file" in message
    assert f"{tmp_path} is not a file" in message
    settings, _ = parse_config(
        {"store": {"id": "s1"}, "mqtt": {"ca_file": str(present)}}, registry=registry(), environ={}
    )
    assert settings.mqtt.ca_file == present


def test_control_socket_path_must_fit_a_unix_socket() -> None:
    too_long = "/run/" + "d" * 98 + "/c.sock"  # 110 bytes
    with pytest.raises(ConfigError, match="at most 107") as caught:
        parse_config(
            {"store": {"id": "s1"}, "control": {"socket": too_long}},
            registry=registry(),
            environ={},
        )
    assert issue_paths(caught.value) == {"control.socket"}
    fits = "/run/" + "d" * 95 + "/c.sock"  # 107 bytes
    settings, _ = parse_config(
        {"store": {"id": "s1"}, "control": {"socket": fits}}, registry=registry(), environ={}
    )
    assert len(str(settings.control.socket)) == 107
    for bad in (0, -1, 1001, "many"):
        with pytest.raises(ConfigError) as caught:
            parse_config(
                {"store": {"id": "s1"}, "control": {"max_connections": bad}},
                registry=registry(),
                environ={},
            )
        assert issue_paths(caught.value) == {"control.max_connections"}


def test_plaintext_needs_explicit_opt_in() -> None:
    with pytest.raises(ConfigError, match="allow_plaintext"):
        parse_config(
            {"store": {"id": "s1"}, "mqtt": {"tls": False}}, registry=registry(), environ={}
        )
    settings, _ = parse_config(
        {"store": {"id": "s1"}, "mqtt": {"tls": False, "allow_plaintext": True}},
        registry=registry(),
        environ={},
    )
    assert settings.mqtt.tls is False


def test_environment_overrides_the_file_and_secrets_stay_secret() -> None:
    settings, _ = parse_config(
        {"store": {"id": "s1"}, "mqtt": {"host": "hq", "port": 8883}},
        registry=registry(),
        environ={"STOREGW_MQTT__PORT": "1884", "STOREGW_MQTT__PASSWORD": "hunter2"},
    )
    assert settings.mqtt.port == 1884
    assert settings.mqtt.host == "hq"
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)


def test_bad_environment_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"store": {"id": "s1"}}, registry=registry(), environ={"STOREGW_MQTT__PORT": "many"}
        )
    assert issue_paths(caught.value) == {"mqtt.port"}


def test_load_config_reports_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml", registry=registry(), environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[store\nid = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, registry=registry(), environ={})
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_config(binary, registry=registry(), environ={})


def test_example_config_is_valid_and_documents_every_option() -> None:
    settings, _ = load_config(EXAMPLE, environ={})
    text = EXAMPLE.read_text(encoding="utf-8")
    for section_name, section in settings:
        if section_name == "devices":
            continue
        assert f"[{section_name}]" in text
        for key in type(section).model_fields:
            documented = f"{key} =" in text or f"[{section_name}.{key}]" in text
            assert documented, f"{section_name}.{key} undocumented"
    for key in SlotConfig.model_fields:
        assert f"# {key} =" in text, f"shelves.slots.{key} undocumented"


def slot(**changes: object) -> dict[str, object]:
    return {
        "slot": "s-1",
        "device": "shelf-a",
        "channel": "ch1",
        "sku": "A",
        "unit_grams": 250,
        **changes,
    }


SHELF = {"name": "shelf-a", "driver": "fake.scale", "options": {"port": "p"}}


def test_slots_map_to_configured_scales() -> None:
    settings, _ = parse_config(
        {"store": {"id": "s1"}, "devices": [SHELF], "shelves": {"slots": [slot()]}},
        registry=registry(),
        environ={},
    )
    assert settings.shelves.slots[0].tolerance == 0.25
    assert settings.shelves.counter_settings().rise_hold_s == 10.0


@pytest.mark.parametrize(
    ("slots", "path", "reason"),
    [
        ([slot(unit_grams=0)], "shelves.slots.0.unit_grams", "greater than 0"),
        ([slot(unit_grams=-5)], "shelves.slots.0.unit_grams", "greater than 0"),
        ([slot(device="shelf-x")], "shelves.slots.0.device", "not in [[devices]]"),
        ([slot(tolerance=0.7)], "shelves.slots.0.tolerance", "less than 0.5"),
        ([slot(min_count=5, max_count=2)], "shelves.slots.0", "max_count"),
        ([slot(), slot(channel="ch2")], "shelves", "duplicate slot"),
        ([slot(), slot(slot="s-2")], "shelves", "already weighs"),
    ],
)
def test_bad_slots_are_config_errors(slots: list[object], path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"store": {"id": "s1"}, "devices": [SHELF], "shelves": {"slots": slots}},
            registry=registry(),
            environ={},
        )
    assert path in issue_paths(caught.value)
    assert reason in str(caught.value)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["store", "mqtt", "storage", "devices", "clock", "control", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=6), inner, max_size=3)
            ),
            max_leaves=8,
        ),
    )
)
def test_garbage_documents_give_config_errors_never_crashes(data: dict[str, object]) -> None:
    try:
        parse_config(data, registry=registry(), environ={})
    except ConfigError as exc:
        assert exc.issues
        assert all(isinstance(issue.reason, str) and issue.reason for issue in exc.issues)


@pytest.mark.parametrize(
    ("labels", "path"),
    [
        ({"sla_s": 0}, "labels.sla_s"),
        ({"lookahead_s": -5}, "labels.lookahead_s"),
        ({"retry_initial_s": 60, "retry_max_s": 10}, "labels"),
        ({"default_model": "huge"}, "labels.default_model"),
        ({"queue_ahead_s": "soon"}, "labels.queue_ahead_s"),
        ({"audit_retention_days": 0}, "labels.audit_retention_days"),
        ({"unknown": 1}, "labels.unknown"),
    ],
)
def test_bad_label_settings_are_named(labels: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"store": {"id": "s1"}, "labels": labels}, registry=registry(), environ={})
    assert any(issue.path == path for issue in caught.value.issues), caught.value.issues
