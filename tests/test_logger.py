"""The run logger: metrics.jsonl rows, what it drops, and picking the wandb mode."""

from __future__ import annotations

import json
import math

import pytest

from agent.config import TrainConfig
from agent.logger import METRICS_FILE, RunLogger, has_wandb_credentials, read_metrics, resolve_wandb_mode


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    """A HOME with no ~/.netrc and no WANDB_API_KEY."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    return tmp_path


def test_metrics_jsonl_rows(tmp_path):
    logger = RunLogger(TrainConfig(wandb_mode="disabled"), tmp_path)
    logger.log({"charts/episodic_return": 0.5, "losses/policy_loss": -1.25, "charts/episodes": 3}, 512)
    logger.log({"eval/success_rate": 1.0}, 1024)
    logger.finish()
    assert read_metrics(tmp_path) == [
        {"global_step": 512, "charts/episodic_return": 0.5, "losses/policy_loss": -1.25, "charts/episodes": 3},
        {"global_step": 1024, "eval/success_rate": 1.0},
    ]
    assert logger.wandb_id is None


def test_non_finite_and_non_numeric_values_are_skipped(tmp_path):
    logger = RunLogger(TrainConfig(wandb_mode="disabled"), tmp_path)
    logger.log({"a": math.nan, "b": math.inf, "c": -math.inf, "d": True, "e": "text", "f": None, "ok": 2.5}, 7)
    logger.finish()
    text = (tmp_path / METRICS_FILE).read_text()
    assert json.loads(text) == {"global_step": 7, "ok": 2.5}
    assert "NaN" not in text and "Infinity" not in text  # strict JSON readers choke on those


def test_a_resumed_run_appends(tmp_path):
    for step in (1, 2):
        logger = RunLogger(TrainConfig(wandb_mode="disabled"), tmp_path)
        logger.log({"x": float(step)}, step)
        logger.finish()
    assert [r["global_step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_read_metrics_without_a_file(tmp_path):
    with pytest.raises(ValueError, match=METRICS_FILE):
        read_metrics(tmp_path)


@pytest.mark.parametrize("mode", ["online", "offline", "disabled"])
def test_explicit_modes_pass_through(mode, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode(mode) == mode


def test_auto_without_credentials_is_offline(no_credentials):
    assert not has_wandb_credentials()
    assert resolve_wandb_mode("auto") == "offline"


def test_auto_with_an_api_key_is_online(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"


def test_auto_with_a_netrc_login_is_online(no_credentials):
    netrc = no_credentials / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    netrc.chmod(0o600)  # netrc refuses a password file others can read
    assert resolve_wandb_mode("auto") == "online"


def test_auto_with_a_netrc_for_another_host_is_offline(no_credentials):
    netrc = no_credentials / ".netrc"
    netrc.write_text("machine example.com\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    assert resolve_wandb_mode("auto") == "offline"
