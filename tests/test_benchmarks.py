"""benchmarks: each script's --smoke run is well-formed (as CI runs it), and the estimator lab's
exact gradient is right (finite differences) and agrees in direction with REINFORCE."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_smoke

from benchmarks.common import STARTED_AT, format_table, time_it, write_json
from benchmarks.gradients import build_mdp, choose_horizon, exact_gradient, init_theta, reinforce_samples
from envs import expected_return, load_map, time_limited_return

# A 3x3 room with lava beside the goal: small enough for a finite difference over every logit,
# and a terminal state of each kind.
TINY = """
S.L
...
..G
"""


def _run(module: str, out: Path) -> subprocess.CompletedProcess:
    return run_smoke(["-m", module], ["--out", str(out)])


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


# --------------------------------------------------------------------------- smoke runs
def test_env_throughput_smoke(tmp_path):
    _run("benchmarks.env_throughput", tmp_path)
    data = json.loads((tmp_path / "env_throughput.json").read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["torch"] == torch.__version__
    rows = data["rows"]
    assert rows[0]["system"] == "gymnasium" and rows[0]["ratio_vs_gym"] == 1.0
    modes = {r["mode"] for r in rows if r["system"] == "BatchedGridWorld"}
    assert modes == {"int", "diff-fwd", "diff-fwd+bwd"}
    for r in rows:
        assert _positive(r["steps_per_s"]) and _positive(r["ratio_vs_gym"]), r
        assert all(_positive(t) for t in r["times"]), r
    assert data["kernel"]
    for k in data["kernel"]:
        assert _positive(k["onehot_steps_per_s"]) and _positive(k["dense_steps_per_s"]) and _positive(k["speedup"])
        assert k["max_grad_diff"] == 0.0  # both kernels give the same gradient at one-hot inputs
    assert (tmp_path / "env_throughput.png").stat().st_size > 0
    prof = data["profile"]
    assert prof["mode"] == "int" and prof["B"] == max(r["B"] for r in rows if r["system"] == "BatchedGridWorld")
    assert prof["top_ops"] and all(o["calls"] >= 1 and 0.0 <= o["share"] <= 1.0 for o in prof["top_ops"])


def test_train_throughput_smoke(tmp_path):
    proc = _run("benchmarks.train_throughput", tmp_path)
    assert "torch.profiler by self CPU time" in proc.stdout
    data = json.loads((tmp_path / "train_throughput.json").read_text())
    assert {r["learner"] for r in data["rows"]} == {"pathwise", "reinforce", "ppo"}
    for r in data["rows"]:
        assert _positive(r["steps_per_s"]) and _positive(r["update_ms"]), r
        # steps/s is every member's B*T per update time, so the two columns must agree.
        steps = r["config"]["num_seeds"] * r["B"] * r["T"]
        assert math.isclose(r["steps_per_s"], steps / (r["update_ms"] / 1e3), rel_tol=1e-9)
        assert 0.0 < r["critic_fit_share"] < 1.0, r
    ops = data["profile"]["top_ops"]
    assert ops and all(o["calls"] >= 1 and 0.0 <= o["share"] <= 1.0 for o in ops)
    assert sum(o["share"] for o in ops) <= 1.0 + 1e-9


def test_train_throughput_times_each_variant_with_its_settings(tmp_path, capsys):
    from benchmarks import train_throughput

    args = ["--smoke", "--learners", "pathwise", "--variants", "", "actor_steps=1,state_norm=false", "num_seeds=2"]
    assert train_throughput.main([*args, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "train_throughput.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["defaults", "actor_steps=1,state_norm=false", "num_seeds=2"]
    # --actor-steps 0 resolves to T / --lookahead (the smoke's T = 4); the variant's is as given.
    assert [(r["config"]["actor_steps"], r["config"]["state_norm"]) for r in rows[:2]] == [(4, True), (1, False)]
    # Two agents of B envs each: their steps count twice.
    seeds = rows[2]
    assert math.isclose(seeds["steps_per_s"], 2 * seeds["B"] * seeds["T"] / (seeds["update_ms"] / 1e3), rel_tol=1e-9)
    with pytest.raises(SystemExit):
        train_throughput.main(["--smoke", "--variants", "actor_steps", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --variants actor_steps: must be FIELD=VALUE with a TrainConfig field"]


def test_train_throughput_splits_the_model_learners_update(tmp_path):
    from benchmarks import train_throughput

    args = ["--smoke", "--learners", "model", "--variants", "train_steps=4", "--out", str(tmp_path)]
    assert train_throughput.main(args) == 0
    data = json.loads((tmp_path / "train_throughput.json").read_text())
    (row,) = data["rows"]
    parts = row["parts"]
    assert set(parts) == {"fit_model", "imagine", "fit_critic", "train_actor_critic"}
    assert all(0.0 < v < 1.0 for v in parts.values()), parts
    # The imagination and the critic's fit run inside the actor-and-critic step, the model's fit beside it.
    assert parts["imagine"] + parts["fit_critic"] < parts["train_actor_critic"]
    assert parts["fit_model"] + parts["train_actor_critic"] < 1.0
    assert row["critic_fit_share"] == parts["fit_critic"]
    assert data["profile"]["learner"] == "model" and data["profile"]["top_ops"]


def test_the_recorded_command_reruns_as_given():
    import shlex

    from benchmarks.common import provenance

    argv = ["--variants", "", "actor_steps=1,state_norm=false", "--env", "S.G\n..."]
    command = provenance("benchmarks.train_throughput", argv)["command"]
    assert shlex.split(command) == ["python", "-m", "benchmarks.train_throughput", *argv]


def test_estimators_smoke(tmp_path):
    proc = _run("benchmarks.estimators", tmp_path)
    assert "Highest median cosine similarity" in proc.stdout
    data = json.loads((tmp_path / "estimators.json").read_text())
    assert _positive(data["world"]["J"]) and _positive(data["world"]["grad_norm"])
    names = {r["estimator"] for r in data["results"]}
    assert {"reinforce", "reinforce+v", "st", "st-gs", "gumbel-rao", "reinmax", "zgr", "gs"} <= names
    for r in data["results"]:
        for key in ("bias", "noise", "var", "seconds"):
            assert _positive(r[key]), (r["estimator"], key, r[key])
        assert r["by_batch"]
        for b in r["by_batch"].values():
            assert b["repeats"] >= 1 and _positive(b["var"])
            assert -1.0 <= b["cos_median"] <= 1.0
    assert data["conclusion"] and (tmp_path / "estimators.png").stat().st_size > 0


def test_lookahead_smoke_and_its_exact_gradient(tmp_path):
    proc = _run("benchmarks.lookahead", tmp_path)
    data = json.loads((tmp_path / "estimators_lookahead.json").read_text())
    assert data["git_commit"] and "Highest median cosine" in proc.stdout
    assert {(r["lookahead"], r["estimator"]) for r in data["results"]} == {
        (K, e) for K in (1, 4) for e in ("st", "reinmax")
    }
    # The truth: at K = 1 with a zero critic the objective is the expected reward of one step, whose
    # gradient by enumeration is mean_s J(pi_s) R(s, .) over the reachable cells.
    import torch

    from benchmarks.gradients import build_mdp, exact_lookahead_gradient, init_theta

    mdp = build_mdp("room5")
    theta = init_theta(mdp, 1.0, 0)
    _, g = exact_lookahead_gradient(mdp, theta, 0.99, 1, torch.zeros(mdp.num_states))
    pi = torch.softmax(theta.double(), -1)  # (S, A)
    R = (mdp.prob * mdp.reward).sum(-1).double()  # (S, A)
    live = mdp.reachable()
    expected = pi * (R - (pi * R).sum(-1, keepdim=True)) * live[:, None] / live.sum()
    torch.testing.assert_close(g, expected)


# --------------------------------------------------------------------------- the lab's maths
def test_exact_gradient_matches_finite_difference():
    mdp = load_map(TINY)
    theta = init_theta(mdp, 0.5, seed=1).double()
    gamma = 0.9
    _, g = exact_gradient(mdp, theta, gamma)
    J = lambda th: float(expected_return(mdp, torch.softmax(th, -1), gamma))  # noqa: E731
    h = 1e-6
    fd = torch.zeros_like(theta)
    for i in range(theta.shape[0]):
        for a in range(theta.shape[1]):
            e = torch.zeros_like(theta)
            e[i, a] = h
            fd[i, a] = (J(theta + e) - J(theta - e)) / (2 * h)
    # Central differences in float64: error ~ h^2 (third derivative) + eps J / h ~ 1e-10, far
    # below the 1e-6 relative tolerance.
    assert torch.allclose(g, fd, atol=1e-7 * float(g.abs().max()) + 1e-12, rtol=1e-6)
    assert float(g.norm()) > 0
    # States the policy never acts in (walls, goal and lava cells) get no gradient.
    assert torch.all(g[~mdp.reachable()] == 0)


def test_time_limited_return_converges_to_expected_return():
    mdp = load_map(TINY)
    policy = torch.softmax(init_theta(mdp, 0.5, seed=2).double(), -1)
    exact = float(expected_return(mdp, policy, 0.9))
    assert float(time_limited_return(mdp, policy, 0.9, 1)) == 0.0  # the goal is 4 steps away
    assert float(time_limited_return(mdp, policy, 0.9, 400)) == pytest.approx(exact, rel=1e-12)


def test_reinforce_agrees_with_exact_gradient():
    # Unbiased, so at a large batch its mean points along the exact gradient. With this seed the
    # lab measures a cosine near 0.99 at B=4096; 0.5 leaves room for any platform's RNG stream.
    mdp = build_mdp("room5")
    theta = init_theta(mdp, 0.5, seed=0)
    gamma = 0.9
    _, g = exact_gradient(mdp, theta, gamma)
    horizon = choose_horizon(mdp, theta, gamma, g, tol=1e-2)
    samples = reinforce_samples(mdp, theta, n=4096, horizon=horizon, gamma=gamma, seed=0)
    for name, x in samples.items():
        mean = x.double().mean(0).flatten()
        cos = float(mean @ g.flatten() / (mean.norm() * g.norm()))
        assert cos > 0.5, (name, cos)


# --------------------------------------------------------------------------- helpers
def test_time_it_and_output_helpers(tmp_path):
    calls = []
    t = time_it(lambda: calls.append(1), repeats=3, warmup=2, min_time=0.0)
    assert len(t.times) == 3 and t.median > 0 and t.calls == 1
    assert len(calls) == 2 + 1 + 3  # warm-up, the calibration call, the repeats
    table = format_table([{"a": 1.23456, "b": "x"}, {"a": float("nan"), "b": None}], formats={"a": ".2f"})
    assert table.splitlines()[2].split("|")[1].strip() == "1.23"
    path = write_json(tmp_path / "x.json", {"v": float("inf"), "t": torch.tensor([1.0])})
    written = json.loads(path.read_text())
    # Provenance comes with every results file: the commit and command of this process.
    assert written == {"v": None, "t": [1.0], "git_commit": STARTED_AT["git_commit"], "command": STARTED_AT["command"]}
    assert written["command"].startswith("python ")
    assert write_json(tmp_path / "y.json", {"git_commit": "given"}).read_text().count("given") == 1  # its own wins
    with pytest.raises(ValueError, match="repeats"):
        time_it(lambda: None, repeats=0)


def test_sb3_vecenv_smoke(tmp_path):
    run_smoke(["-m", "benchmarks.sb3_vecenv"], ["--out", str(tmp_path)])


def test_threads_smoke(tmp_path):
    run_smoke(["-m", "benchmarks.threads"], ["--out", str(tmp_path), "--threads", "1"])
    data = json.loads((tmp_path / "threads_smoke.json").read_text())
    assert [r["setting"] for r in data["rows"]] == ["1 thread(s), alone", "1 thread(s), pair"]
    for r in data["rows"]:
        assert _positive(r["process seconds (median)"]) and _positive(r["SPS (median)"]), r
    assert data["git_commit"] and data["command"].startswith("python -m benchmarks.threads")


def test_num_seeds_smoke(tmp_path):
    run_smoke(["-m", "benchmarks.num_seeds"], ["--out", str(tmp_path)])
    data = json.loads((tmp_path / "num_seeds_smoke.json").read_text())
    assert [r["how"] for r in data["rows"]] == ["sequential", "one process"]
    assert _positive(data["speedup"]) and all(_positive(t) for ts in data["seconds"].values() for t in ts)
    assert {how: len(s) for how, s in data["scores"].items()} == {"sequential": 2, "one process": 2}
    assert data["git_commit"] and data["command"].startswith("python -m benchmarks.num_seeds")


def test_fusion_smoke(tmp_path):
    run_smoke(["-m", "benchmarks.fusion"], ["--out", str(tmp_path)])
    data = json.loads((tmp_path / "fusion_smoke.json").read_text())
    rows = {r["variant"]: r for r in data["rows"]}
    assert set(rows) == {"rows, eager", "actions first, eager"}  # the smoke compiles nothing
    assert all(_positive(r["step_ms"]) and _positive(r["vs rows, eager"]) for r in rows.values())
    # The actions-first transcription takes the learner's gradient from the same noise.
    assert rows["rows, eager"]["max_grad_diff"] == 0 and rows["actions first, eager"]["max_grad_diff"] < 1e-5
    assert data["git_commit"] and data["command"].startswith("python -m benchmarks.fusion")


def test_reference_gap_smoke(tmp_path):
    proc = run_smoke(["-m", "benchmarks.reference_gap"], ["--out", str(tmp_path)])
    data = json.loads((tmp_path / "reference_gap_smoke.json").read_text())
    rows = {r["world"]: r for r in data["rows"]}
    assert set(rows) == {"FrozenLake4x4-slippery", "CliffWalking"}
    # Deterministic CliffWalking: the discounted optimum is the time-limited one. The slippery lake's
    # gamma-optimal policy scores within (0, 1] of it, and no better than the best it is compared with.
    assert rows["CliffWalking"]["gamma-optimal score (gamma 0.99)"] == pytest.approx(1.0)
    lake = rows["FrozenLake4x4-slippery"]
    assert 0 < lake["gamma-optimal score (gamma 0.99)"] <= 1 + 1e-9
    assert lake["best greedy-on-k-step score"] <= 1 + 1e-9
    assert "0 of 2 worlds" in proc.stdout and data["git_commit"]


def test_generalisation_smoke_and_its_results_page(tmp_path):
    run_smoke(
        ["-m", "benchmarks.generalisation"],
        [
            "--out",
            str(tmp_path),
            "--runs-dir",
            str(tmp_path / "runs"),
            *"--workers 1 --name generalisation_held-out_smoke --algos pathwise ppo".split(),
        ],
    )
    data = json.loads((tmp_path / "generalisation_held-out_smoke.json").read_text())
    assert data["git_commit"] and data["command"].startswith("python -m benchmarks.generalisation")
    assert len(data["runs"]) == 4  # 2 worlds x 2 learners x 1 seed
    for r in data["runs"]:
        assert -1e9 < r["normalized_score"] <= 1 + 1e-9 and 0 <= r["exact_success_rate"] <= 1
        assert r["run_git_commit"] == data["git_commit"] and r["config"]["total_timesteps"] == 4096
        assert (tmp_path / "runs" / f"{r['world']}__{r['algo']}__{r['seed']}" / "best.pt").exists()
    assert sorted(t["algo"] for t in data["totals"]) == ["pathwise", "ppo"]
    assert all(t["worlds"] == 2 for t in data["totals"])
    # Every row names its learner's information class: the default pathwise learner's is simulator.
    assert {t["algo"]: t["class"] for t in data["totals"]} == {"pathwise": "simulator", "ppo": "samples"}
    assert all(r["seconds_to_target"] is None or r["seconds_to_target"] > 0 for r in data["runs"])
    page, readme = tmp_path / "results.md", tmp_path / "README.md"
    from benchmarks.report import BEGIN, END

    readme.write_text(f"# x\n{BEGIN}\nold\n{END}\nafter\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.report",
            "--results",
            str(tmp_path),
            "--out",
            str(page),
            "--readme",
            str(readme),
        ],
        cwd=Path(__file__).resolve().parents[1],
        check=True,
        capture_output=True,
    )
    table = readme.read_text()
    assert "old" not in table and table.endswith(f"{END}\nafter\n")
    row = r"\|\s*`generalisation_held-out_smoke`\s*\|\s*pathwise\s*\|\s*simulator\s*\|\s*0.5\s*\|\s*0\s*\|\s*\d/2\s*\|"
    assert re.search(row, table), table
    text = page.read_text()
    assert "generalisation_held-out_smoke" in text and f"{data['git_commit']} (4 runs)" in text
    assert "## Held-out half: every learner against PPO" in text  # the comparison, from the same file


@pytest.mark.parametrize(
    ("given", "value"),
    [("anneal_lr=false", False), ("anneal_lr=True", True), ("entropy_coef=0.05", 0.05), ("backup_steps=4", 4)],
)
def test_set_types_values_as_train_py_does(given, value):
    from benchmarks.common import parse_set

    (got,) = parse_set([given], "--set").values()
    assert got == value and type(got) is type(value)


def test_set_refuses_a_switch_that_is_not_true_or_false(capsys):
    from benchmarks.common import parse_set

    with pytest.raises(SystemExit):
        parse_set(["anneal_lr=no"], "--set")
    err = capsys.readouterr().err
    assert "anneal_lr=true or anneal_lr=false" in err and len(err.strip().splitlines()) == 1


def test_the_results_page_builds_from_the_committed_results(tmp_path):
    """Every committed results file the page shows gets its section, under the command that made it."""
    from benchmarks import report

    root = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
    page = tmp_path / "results.md"
    assert report.main(["--results", str(root), "--out", str(page), "--readme", ""]) == 0
    text = page.read_text()
    for path in [*root.glob("generalisation_*.json"), *root.glob("decisions_*.json")]:
        assert f"## {path.stem}" in text and json.loads(path.read_text())["command"] in text, path.stem
    for path in [*(root / f"{stem}.json" for stem in report.SPEED), *root.glob("threads_*.json")]:
        if path.exists():
            assert json.loads(path.read_text())["command"] in text, path.stem


def test_large_maps_smoke(tmp_path):
    run_smoke(["-m", "benchmarks.large_maps"], ["--out", str(tmp_path)])
    data = json.loads((tmp_path / "large_maps_smoke.json").read_text())
    (row,) = data["runs"]
    assert row["side"] == 16 and row["S"] == 256 and row["time_limit"] == 4 * 256
    for key in ("setup_s", "update_s", "evaluation_s", "peak_rss_mb"):
        assert _positive(row[key]), (key, row)
    assert data["git_commit"] and data["command"].startswith("python -m benchmarks.large_maps")
