"""``storegw demo --esl oepl``: the demo's simulated ESL becomes the real esl.oepl driver
against the fake access point, which the demo serves from a child process."""

from __future__ import annotations

from pathlib import Path

from gateway.cli.main import _demo_devices, _start_fake_access_point, _stop_fake_access_point


def test_the_demo_swaps_its_simulated_esl_for_esl_oepl() -> None:
    data = {
        "devices": [
            {"name": "esl-ap-1", "driver": "simulated.esl", "options": {"seed": 4}},
            {"name": "scale", "driver": "simulated.scale", "options": {}},
        ]
    }
    _demo_devices(data, Path("labels"), "http://127.0.0.1:8080")
    assert data["devices"][0] == {
        "name": "esl-ap-1",
        "driver": "esl.oepl",
        "options": {"url": "http://127.0.0.1:8080"},
    }
    assert data["devices"][1]["driver"] == "simulated.scale"


def test_the_demo_serves_a_fake_access_point_in_a_child_process() -> None:
    child, url = _start_fake_access_point()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert child.poll() is None
    finally:
        _stop_fake_access_point(child)
