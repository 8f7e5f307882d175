"""Checkpoints: atomic writes, round trips, weights_only loading, clear errors."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from agent.learning.policy import PolicyNet
from agent.run.checkpoint import FORMAT, LATEST, CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from agent.run.config import TrainConfig


def _state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    policy = PolicyNet((81,), 4, hidden=16)
    optimizer = torch.optim.Adam(policy.parameters())
    policy(torch.zeros(2, 81)).sum().backward()
    optimizer.step()
    return {
        "policy": policy.state_dict(),
        "learner": {"optimizer": optimizer.state_dict()},
        "generator": torch.Generator().manual_seed(seed).get_state(),
        "global_step": 1234,
        "config": TrainConfig(env="empty", hidden=16, tags=("a", "b")).to_dict(),
        "obs_shape": [81],
        "num_actions": 4,
        "wandb_id": None,
    }


def test_round_trip(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path / LATEST, state)
    loaded = load_checkpoint(path)
    assert loaded["format"] == FORMAT
    assert all(isinstance(v, str) for v in loaded["versions"].values())
    assert loaded["versions"]["torch"] == str(torch.__version__)
    assert loaded["global_step"] == 1234 and loaded["obs_shape"] == [81]
    for k, v in state["policy"].items():
        assert torch.equal(loaded["policy"][k], v)
    assert torch.equal(loaded["generator"], state["generator"])
    assert loaded["learner"]["optimizer"]["state"][0]["step"] == state["learner"]["optimizer"]["state"][0]["step"]
    assert TrainConfig.from_dict(loaded["config"]) == TrainConfig(env="empty", hidden=16, tags=("a", "b"))
    # The loaded weights drive a fresh network to the same outputs.
    net = PolicyNet((81,), 4, hidden=16)
    net.load_state_dict(loaded["policy"])
    ref = PolicyNet((81,), 4, hidden=16)
    ref.load_state_dict(state["policy"])
    x = torch.eye(81)
    assert torch.equal(net(x), ref(x))


def test_a_run_directory_resolves_to_its_checkpoint(tmp_path):
    save_checkpoint(tmp_path / LATEST, _state())
    assert resolve_checkpoint(tmp_path) == tmp_path / LATEST
    assert load_checkpoint(tmp_path)["global_step"] == 1234


def test_save_leaves_no_temp_files_and_replaces_atomically(tmp_path):
    path = tmp_path / "run" / LATEST  # the parent is created
    save_checkpoint(path, _state(0))
    save_checkpoint(path, _state(1) | {"global_step": 99})
    assert sorted(p.name for p in path.parent.iterdir()) == [LATEST]
    assert load_checkpoint(path)["global_step"] == 99


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / LATEST, _state())
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, {"cannot": threading.Lock()})  # not picklable: torch.save fails mid-way
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [LATEST]


class _Custom:
    """An arbitrary class: a full pickle load constructs it, a weights_only load must refuse."""


def test_load_is_weights_only(tmp_path):
    path = tmp_path / "custom.pt"
    torch.save({"format": FORMAT, "obj": _Custom()}, path)
    # The file does reference the class (a plain pickle load would construct it), found
    # without loading anything.
    assert any("_Custom" in g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path))
    with pytest.raises(CheckpointError, match="Unsupported global"):
        load_checkpoint(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at") as e:
        load_checkpoint(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path)  # a directory without checkpoint.pt


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not_ours"])
def test_damaged_or_foreign_files_raise_one_line(damage, tmp_path):
    path = tmp_path / LATEST
    if damage == "not_ours":
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        good = save_checkpoint(tmp_path / "good.pt", _state()).read_bytes()
        path.write_bytes({"garbage": os.urandom(512), "truncated": good[: len(good) // 2], "empty": b""}[damage])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    assert "\x1b[" not in message  # torch's own message carries terminal colour codes
