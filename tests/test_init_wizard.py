"""`riskman init` pieces: firm presets and names, account picking, every template loads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from riskman.config import load_config
from riskman.init_wizard import TEMPLATES, Answers, InitError, config_text, firm_urls, pick_accounts
from tests.conftest import HOLIDAYS


def test_firm_presets_and_projectx_firms_by_name() -> None:
    assert firm_urls("TopstepX", None, None)[1:] == (
        "https://api.topstepx.com",
        "https://rtc.topstepx.com",
    )
    assert firm_urls("demo", None, None)[1] == "https://gateway-api-demo.s2f.projectx.com"
    assert firm_urls("e8", None, None)[1:] == (
        "https://api.e8.projectx.com",
        "https://rtc.e8.projectx.com",
    )
    assert firm_urls("custom", "http://127.0.0.1:5/", "http://127.0.0.1:5/hubs")[1:] == (
        "http://127.0.0.1:5",
        "http://127.0.0.1:5",
    )
    with pytest.raises(InitError, match="--api-url"):
        firm_urls("custom", None, None)
    with pytest.raises(InitError, match="not a firm name"):
        firm_urls("api.evil.com/x", None, None)


def test_accounts_are_picked_by_number_or_id() -> None:
    listed = [501, 502, 503]
    assert pick_accounts("all", listed) == []
    assert pick_accounts("1, 3", listed) == [501, 503]
    assert pick_accounts("502,502", listed) == [502]
    with pytest.raises(InitError, match="not among"):
        pick_accounts("999", listed)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_writes_a_valid_config(template: str, tmp_path: Path) -> None:
    key = tmp_path / "api_key"
    key.write_text("k\n")
    os.chmod(key, 0o600)
    shutil.copyfile(HOLIDAYS, tmp_path / "holidays.yaml")
    answers = Answers(
        config=tmp_path / "riskman.yaml",
        api_url="https://api.topstepx.com",
        rtc_url="https://rtc.topstepx.com",
        firm="TopstepX",
        username="trader",
        accounts=[12],
        account_names={12: "COMBINE"},
        template=template,
    )
    answers.config.write_text(config_text(answers))
    settings = load_config(answers.config)
    assert settings.account_ids == [12]
    assert settings.rules.auth_loss_guard.enabled
