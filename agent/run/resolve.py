"""Resolving a run's configuration: the world it names, its automatic values made concrete,
every field checked (one line naming the flag, the value and the fix), and what a stored run
may change on --resume."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from agent.run.config import LEARNERS, TrainConfig


def build_world(cfg: TrainConfig, env: str | None = None):
    """The world `cfg` names (or `env`, another world spec, with none of cfg's env options)."""
    from envs import MapOptions, make_world  # envs imports torch: only when a world is built
    from envs.blackbox import is_minigrid, open_black_box
    from envs.toy_text import NoTransitionTable

    # Only options that differ from the defaults: gymnasium ids take none.
    given = {"slip": cfg.slip, "step_reward": cfg.step_reward, "hazard_reward": cfg.hazard_reward}
    options = {k: v for k, v in given.items() if v != getattr(MapOptions, k)}
    spec = env or cfg.env
    kwargs = parse_env_kwargs(cfg.env_kwargs) if env is None else {}
    try:
        if is_minigrid(spec):  # registered only once minigrid is imported, and never a table
            raise NoTransitionTable(spec)
        return make_world(spec, env_kwargs=kwargs or None, **options)
    except NoTransitionTable:
        if options:
            raise ValueError(
                f"{', '.join(flag(k) for k in options)} apply to our own maps; {spec} is a gymnasium env "
                "(pass its own arguments with --env-kwargs)"
            ) from None
        return open_black_box(spec, kwargs)


def resolve(cfg: TrainConfig) -> tuple[TrainConfig, Any]:
    """A config as given (the command line, or a stored config with flags on top) -> (the resolved
    config, its world): checked field by field, the world built, and every automatic value made
    concrete. The one place defaults are decided; config.json records what it returns."""
    validate(cfg)
    world = build_world(cfg)
    return resolve_defaults(cfg, world), world


def resolve_defaults(cfg: TrainConfig, world) -> TrainConfig:
    """`cfg` with its automatic values made concrete, so the run's config.json records what was
    used. Learner settings have one default for every world; what depends on the world is only
    how the policy sees it (`obs_mode`)."""
    cfg = replace(cfg, obs=obs_mode(cfg, world))
    if cfg.algo == "model" and cfg.obs == "image":
        raise ValueError(
            f"--env {cfg.env}: the model learner reads flat observations, and this world is seen as images "
            "(procedural mazes); use --obs onehot for a single map, or another learner"
        )
    if is_black_box(world):
        cfg = black_box_defaults(cfg, world)
    elif cfg.explore_starts is None:
        cfg = replace(cfg, explore_starts=0.5)
    if cfg.num_envs is None:
        cfg = replace(cfg, num_envs=LEARNERS[cfg.algo][0].default_num_envs)
    cfg = cfg.with_learner_defaults()
    if cfg.actor_backups is None:  # value iteration for the actor belongs to the oracle critic only
        cfg = replace(cfg, actor_backups=32 if cfg.algo == "pathwise" and cfg.critic == "oracle" else 0)
    if cfg.actor_steps == 0:  # after every look-ahead
        cfg = replace(cfg, actor_steps=cfg.horizon // cfg.lookahead if cfg.horizon % cfg.lookahead == 0 else 1)
    if cfg.algo == "pathwise" and cfg.obs == "image" and not cfg.value_map:
        raise ValueError(
            "--no-value-map: the pathwise learner reads its critic as a table of cells, which for "
            "images is the value map; drop --no-value-map (or use --algo ppo / reinforce)"
        )
    if cfg.num_seeds > 1:
        refused = [
            (cfg.algo != "pathwise", f"--algo {cfg.algo}"),
            (cfg.obs != "onehot", f"--obs {cfg.obs} (this world's observations)"),
            (cfg.explore_bonus > 0, f"--explore-bonus {cfg.explore_bonus}"),
        ]
        for bad, what in refused:
            if bad:
                raise ValueError(
                    f"--num-seeds {cfg.num_seeds} trains pathwise agents on one-hot observations without the "
                    f"visit bonus, not with {what}; run the seeds as separate processes (--seed K)"
                )
    return cfg


def default_learner(cfg: TrainConfig) -> str:
    """The learner a run trains when none is named: pathwise, or the model learner on a gymnasium
    env without a table (a black box), which pathwise can't step. An env that can't be opened is
    its one-line ValueError here, before any flag is checked against the learner."""
    from envs.world import looks_like_gym_id

    if not looks_like_gym_id(cfg.env):
        return "pathwise"
    return "model" if is_black_box(build_world(cfg)) else "pathwise"


def is_black_box(world) -> bool:
    """Whether the world is a gymnasium env known only by stepping it (`envs.blackbox`)."""
    from envs.blackbox import BlackBoxSpec

    return isinstance(world, BlackBoxSpec)


def black_box_defaults(cfg: TrainConfig, world) -> TrainConfig:
    """What a run on a black-box env can't do is refused in one line; exploring starts, which
    need the env's cells, are off. (`--explore-bonus` counts observations there.)"""
    if cfg.algo == "pathwise":
        raise ValueError(
            f"--env {cfg.env} has no transition table, and the pathwise learner steps the env's differentiable "
            f"form, which it lacks; train one that learns from experience: python train.py model --env {cfg.env} "
            "(or ppo, reinforce)"
        )
    if cfg.explore_starts:
        raise ValueError(
            f"--explore-starts {cfg.explore_starts} starts episodes in any cell, and --env {cfg.env} is a "
            "gymnasium env without cells; drop the flag"
        )
    if cfg.stop_at_success is not None and world.success_rule is None:
        raise ValueError(
            f"--stop-at-success {cfg.stop_at_success}: --env {cfg.env} defines no success (Minigrid envs do); "
            "drop the flag"
        )
    return replace(cfg, explore_starts=0.0)


def obs_mode(cfg: TrainConfig, world) -> str:
    """`--obs`, or for "auto": an image when the world is a family of layouts (a policy must see
    which maze it is in), one-hot cells for a single world, the env's own observation as a float
    vector for a black-box env."""
    black_box = is_black_box(world)
    if cfg.obs == "auto":
        return "flat" if black_box else "image" if world.layouts_vary else "onehot"
    if black_box != (cfg.obs == "flat"):
        fits = "flat (or auto)" if black_box else "onehot or image (or auto)"
        raise ValueError(f"--obs {cfg.obs} does not fit --env {cfg.env}; use --obs {fits}")
    return cfg.obs


# Seeds derived from --seed for what evaluation plays, so it never replays training's noise or
# mazes: the periodic evaluation that picks the kept policy ("validation") and the report on the
# kept policy ("test": for a family of procedural mazes, mazes neither training nor the choice saw).
EVAL_SEED_OFFSET = {"validation": 10_000, "test": 20_000}
EVAL_MAZE_OFFSET = {"validation": 1_000_000, "test": 2_000_000}


def eval_seeds(cfg: TrainConfig, split: str, extra: int = 0) -> dict[str, int]:
    """{"env": the seed of an evaluation's envs, "mazes": of its maze pool} for `split`; `extra`
    shifts both (agent.evaluate's --seed)."""
    return {"env": cfg.seed + EVAL_SEED_OFFSET[split] + extra, "mazes": cfg.seed + EVAL_MAZE_OFFSET[split] + extra}


def member_configs(cfg: TrainConfig, run_dir) -> list[TrainConfig]:
    """The agents of a --num-seeds run in `run_dir`, each a single run's config (seed --seed + k,
    directory run_dir/seed-K, wandb group the run's name), so each member's directory resumes and
    evaluates as a run of its own."""
    return [
        replace(
            cfg,
            seed=cfg.seed + k,
            num_seeds=1,
            runs_dir=str(run_dir),
            run_name=f"seed-{cfg.seed + k}",
            wandb_group=cfg.wandb_group or run_dir.name,
        )
        for k in range(cfg.num_seeds)
    ]


def run_record(cfg: TrainConfig) -> dict[str, Any]:
    """What config.json holds: every field, and the seeds derived from them (read back by
    `TrainConfig.from_dict`, which takes the fields)."""
    return cfg.to_dict() | {
        "derived_seeds": {
            "train": cfg.seed,
            "validation": eval_seeds(cfg, "validation"),
            "test": eval_seeds(cfg, "test"),
        }
    }


def parse_env_kwargs(items: tuple[str, ...]) -> dict[str, Any]:
    """`("map_name:8x8", "is_slippery:false")` -> {"map_name": "8x8", "is_slippery": False}.

    Values are typed: true/false in any case are booleans, none is None, numbers are numbers,
    and anything else (8x8, a FrozenLake desc like SFF/FHF/FFG) stays a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition(":")
        if not sep or not key:
            raise ValueError(f"--env-kwargs item {item!r} must look like key:value, e.g. map_name:8x8")
        if key in out:
            raise ValueError(f"--env-kwargs gives {key!r} twice; give each keyword once")
        out[key] = _typed(raw)
    return out


def _typed(raw: str) -> Any:
    word = raw.strip().lower()
    if word in ("true", "false"):
        return word == "true"
    if word in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# field -> (accepted?, the accepted range in words). Every numeric field is checked where it
# enters, so a nan, an inf or a value out of range never reaches the learner.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "slip": (lambda v: _finite(v) and 0 <= v < 1, "a probability in [0, 1)"),
    "step_reward": (_finite, "a finite number"),
    "hazard_reward": (_finite, "a finite number"),
    "maze_pool": (lambda v: v >= 1, "an integer >= 1"),
    "tau": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "tau_min": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "tau_anneal_rate": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "lookahead": (lambda v: v >= 1, "an integer >= 1"),
    "actor_steps": (lambda v: v >= 0, "an integer >= 0 (0: one after every look-ahead)"),
    "explore_starts": (lambda v: v is None or (_finite(v) and 0 <= v <= 1), "a probability in [0, 1]"),
    "explore_bonus": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "entropy_coef": (lambda v: v is None or (_finite(v) and v >= 0), "a finite number >= 0"),
    "logit_penalty": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "max_grad_norm": (lambda v: _finite(v) and v >= 0, "a finite number >= 0 (0: no clipping)"),
    "num_envs": (lambda v: v is None or v >= 1, "an integer >= 1"),
    "horizon": (lambda v: v >= 1, "an integer >= 1"),
    "total_timesteps": (lambda v: v >= 1, "an integer >= 1"),
    "learning_rate": (lambda v: v is None or (_finite(v) and v > 0), "a finite number > 0"),
    "actor_warmup": (lambda v: v >= 0, "an integer >= 0 (0: no warm-up)"),
    "critic_learning_rate": (lambda v: v is None or (_finite(v) and v > 0), "a finite number > 0"),
    "gamma": (lambda v: v is None or (_finite(v) and 0 <= v < 1), "in [0, 1)"),
    "gae_lambda": (lambda v: _finite(v) and 0 <= v <= 1, "in [0, 1]"),
    "backup_steps": (lambda v: v >= 1, "an integer >= 1"),
    "actor_backups": (lambda v: v is None or v >= 0, "an integer >= 0"),
    "update_epochs": (lambda v: v >= 1, "an integer >= 1"),
    "imagine_horizon": (lambda v: v >= 1, "an integer >= 1"),
    "model_hidden": (lambda v: v >= 1, "an integer >= 1"),
    "train_steps": (lambda v: v >= 1, "an integer >= 1"),
    "model_batch": (lambda v: v >= 1, "an integer >= 1"),
    "critic_batch": (lambda v: v >= 0, "an integer >= 0 (0: the whole window)"),
    "real_actor_coef": (lambda v: _finite(v) and v >= 0, "a finite number >= 0 (0: the imagined returns only)"),
    "replay_size": (lambda v: v >= 1, "an integer >= 1"),
    "model_learning_rate": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "num_minibatches": (lambda v: v >= 1, "an integer >= 1"),
    "clip_coef": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "hidden": (lambda v: v >= 1, "an integer >= 1"),
    "threads": (lambda v: v >= 1, "an integer >= 1"),
    "seed": (lambda v: 0 <= v < 2**63, "an integer >= 0"),
    "num_seeds": (lambda v: v >= 1, "an integer >= 1"),
    "eval_every": (lambda v: v >= 0, "an integer >= 0 (0: only at the end)"),
    "eval_episodes": (lambda v: v >= 1, "an integer >= 1"),
    "save_every": (lambda v: v >= 0, "an integer >= 0 (0: only at the end and by --save-every-s)"),
    "save_every_s": (lambda v: _finite(v) and v >= 0, "a finite number of seconds >= 0 (0: off)"),
    "stop_at_success": (lambda v: v is None or (_finite(v) and 0 <= v <= 1), "a success rate in [0, 1]"),
}


# Fields a resumed run can't change: they define the world, the networks' shapes or the run itself.
FIXED_ON_RESUME = frozenset(
    {
        "env",
        "env_kwargs",
        "slip",
        "step_reward",
        "hazard_reward",
        "maze_pool",
        "obs",
        "algo",
        "hidden",
        "value_map",
        "run_name",
        "runs_dir",
        "overwrite",
        "num_seeds",
    }
)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# Flags that were renamed, -> what to write now.
RENAMED = {"--no-critic": "--critic none (or --critic oracle, the table-reading critic that --critic meant before)"}


def refuse_renamed_flags(argv: list[str]) -> None:
    """Raise ValueError (one line) naming the flag of today for a flag that was renamed."""
    for arg in argv:
        if arg.split("=", 1)[0] in RENAMED:
            raise ValueError(f"{arg} was renamed: write {RENAMED[arg.split('=', 1)[0]]}")


def validate(cfg: TrainConfig) -> None:
    """Raise ValueError naming the flag, the value and the accepted range; the CLI prints it as one
    line. Cross-field rules come after the per-field ones."""
    from agent.learning.straight_through import ESTIMATORS

    for name, (ok, accepted) in RULES.items():
        value = getattr(cfg, name)
        if not ok(value):
            raise ValueError(f"{flag(name)} {value!r} is out of range: it must be {accepted}")
    if cfg.estimator not in ESTIMATORS:
        raise ValueError(f"--estimator {cfg.estimator!r} is unknown; choose one of {', '.join(ESTIMATORS)}")
    if cfg.actor_steps and (cfg.horizon % cfg.actor_steps or (cfg.horizon // cfg.actor_steps) % cfg.lookahead):
        raise ValueError(
            f"--actor-steps {cfg.actor_steps} must divide --horizon {cfg.horizon} into parts of whole "
            f"look-aheads (--lookahead {cfg.lookahead})"
        )
    if cfg.actor_backups and cfg.critic != "oracle":
        raise ValueError(
            f"--actor-backups {cfg.actor_backups} backs the critic up over the env's whole tables, which only "
            "--critic oracle reads; add --critic oracle or drop --actor-backups"
        )
    if cfg.algo == "model" and cfg.estimator == "exact":
        raise ValueError(
            "--estimator exact sums over the actions of one step through the env's own step; the model "
            "learner imagines several through a learnt model: use st, st-gs, gumbel-rao, reinmax, zgr or gs"
        )
    if cfg.actor_grad == "natural" and cfg.imagine_horizon != 1:
        raise ValueError(
            f"--actor-grad natural with --imagine-horizon {cfg.imagine_horizon}: it reads every action's "
            "one-step q, so it needs --imagine-horizon 1; use 1 or another --actor-grad"
        )
    if cfg.estimator == "exact" and cfg.lookahead != 1:
        raise ValueError(
            f"--estimator exact with --lookahead {cfg.lookahead}: the sum over the four actions is the exact "
            "gradient only at --lookahead 1; use --lookahead 1 or another estimator"
        )
    if cfg.lookahead > cfg.horizon:
        raise ValueError(f"--lookahead {cfg.lookahead} must be at most --horizon {cfg.horizon}")
    if cfg.tau_min > cfg.tau:
        raise ValueError(
            f"--tau-min {cfg.tau_min} must be at most --tau {cfg.tau} (the schedule starts at "
            "--tau and anneals down to --tau-min)"
        )
    if not cfg.env.strip():
        raise ValueError("--env is empty; give a built-in map, a map file, maze:HxW or a gymnasium id")
    parse_env_kwargs(cfg.env_kwargs)


__all__ = ["TrainConfig", "parse_env_kwargs", "validate"]
