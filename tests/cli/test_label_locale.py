"""``[store] locale`` through ``storegw check-config``: a bad locale is a configuration error
(exit 78) naming the key and the value; a good one passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon import run_cli, write_config


@pytest.mark.parametrize(
    ("locale", "reason"),
    [("xx_YY", "unknown locale"), ("pt_PT", "no label words"), ("de_DE.UTF-8", "expected")],
)
def test_check_config_refuses_a_bad_locale(tmp_path: Path, locale: str, reason: str) -> None:
    config = with_locale(tmp_path, locale)
    result = run_cli("check-config", str(config))
    assert result.returncode == 78, result
    output = result.stdout + result.stderr
    assert "store.locale" in output
    assert locale in output
    assert reason in output


def test_check_config_accepts_a_known_locale(tmp_path: Path) -> None:
    result = run_cli("check-config", str(with_locale(tmp_path, "fr_FR")))
    assert result.returncode == 0, result.stderr


def with_locale(tmp_path: Path, locale: str) -> Path:
    config = write_config(tmp_path / "gateway.toml", state_dir=tmp_path, devices=[])
    text = config.read_text(encoding="utf-8")
    marker = 'timezone = "Europe/Berlin"\n'
    assert marker in text
    config.write_text(text.replace(marker, f'{marker}locale = "{locale}"\n', 1), encoding="utf-8")
    return config
