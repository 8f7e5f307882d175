"""The learners the Minigrid benchmark (`benchmarks.minigrid`) runs, and how each is made.

Learners and their information class (every one learns from samples here: a black box has no
tables and no differentiable step):
- `model` (train.py's default on a black box: pathwise through a model learnt from experience),
  `model-reinforce` (the same model, its actor trained by REINFORCE, `--actor-grad reinforce`),
  `ppo`, `reinforce`: train.py's learners with their defaults (`agent.run.trainer.train`);
  `model-128`: the model learner with 128 train steps a window, each cheaper (a 128-wide model,
  the critic on 64 of the window's steps), `model-cheap`: today's 64 of those, `model-cb64`: only
  the critic's part of that, `model-h2`: two imagined steps, and `model-real`, `model-real01`:
  the actor also on the last window's real returns (`--real-actor-coef` 1, 0.1), `model-lr1e3`,
  `model-lr3e3`: the actor's learning rate, `model-natural`: `--actor-grad natural`, `model-h64`:
  the policy's and critic's layers 64 wide, `model-b128`, `model-b256`: 32 train steps of 128
  transitions, 16 of 256, `model-b128c64`: the first with `--critic-batch 64`, `model-bonus005`,
  `model-bonus02`, `model-bonus05`: `--explore-bonus` 0.005, 0.02, 0.05, `model-bonus05-b128`: the
  last at 32 x 128, beside today's;
- `sb3-ppo`: SB3 PPO on `FlatObsWrapper` observations with the zoo's Minigrid settings (8 envs,
  n_steps 128, batch 64, 10 epochs, lr 2.5e-4, no entropy bonus, gamma 0.99, lambda 0.95, clip 0.2;
  ../shared/REFERENCES.md);
- `sb3-dqn`: SB3 DQN on the same observations with SB3's defaults (`minigrid_sb3.SB3_DQN`; the
  zoo has no Minigrid DQN settings), a reference point on a few envs.
"""

from __future__ import annotations

from typing import Literal, get_args

# Every learner this benchmark runs, in the order of their figures' colours (the --learners choices).
Learner = Literal[
    "model",
    "model-reinforce",
    "ppo",
    "reinforce",
    "sb3-ppo",
    "sb3-dqn",
    "model-128",
    "model-cheap",
    "model-h2",
    "model-cb64",
    "model-real",
    "model-real01",
    "model-lr1e3",
    "model-lr3e3",
    "model-natural",
    "model-h64",
    "model-b128",
    "model-b256",
    "model-b128c64",
    "model-bonus005",
    "model-bonus02",
    "model-bonus05",
    "model-bonus05-b128",
]
CLASS = dict.fromkeys(get_args(Learner), "samples")
# Our learners as train.py names them, with the flags that make each one.
OURS = {
    "model": {"algo": "model"},
    "model-reinforce": {"algo": "model", "actor_grad": "reinforce"},
    # The model learner with twice the train steps, each cheaper (1a1c674's defaults), beside today's.
    "model-128": {"algo": "model", "train_steps": 128, "model_hidden": 128, "critic_batch": 64},
    # ... and with today's 64 train steps, each of those cheaper ones.
    "model-cheap": {"algo": "model", "model_hidden": 128, "critic_batch": 64},
    # ... and today's learner with only the critic's part of that.
    "model-cb64": {"algo": "model", "critic_batch": 64},
    # Two imagined steps: waiting then loses gamma^2 of the value, not gamma (the loop trap, docs/guide.md).
    "model-h2": {"algo": "model", "imagine_horizon": 2},
    # The actor also follows the real steps' returns, the loop trap's other remedy (docs/guide.md).
    "model-real": {"algo": "model", "real_actor_coef": 1.0},
    "model-real01": {"algo": "model", "real_actor_coef": 0.1},
    # The actor's learning rate (3e-4): its greedy policy lags the q it climbs (docs/guide.md).
    "model-lr1e3": {"algo": "model", "learning_rate": 1e-3},
    "model-lr3e3": {"algo": "model", "learning_rate": 3e-3},
    # ... or the natural gradient of the same one-step return, which does not wait on pi(a).
    "model-natural": {"algo": "model", "actor_grad": "natural"},
    # The policy's and the critic's hidden layers as wide as the zoo's (64; 128 by default).
    "model-h64": {"algo": "model", "hidden": 64},
    # The same replayed transitions a window in fewer, larger train steps.
    "model-b128": {"algo": "model", "train_steps": 32, "model_batch": 128},
    "model-b256": {"algo": "model", "train_steps": 16, "model_batch": 256},
    "model-b128c64": {"algo": "model", "train_steps": 32, "model_batch": 128, "critic_batch": 64},
    "model-bonus005": {"algo": "model", "explore_bonus": 0.005},  # visits of hashed observations
    "model-bonus02": {"algo": "model", "explore_bonus": 0.02},
    "model-bonus05": {"algo": "model", "explore_bonus": 0.05},
    "model-bonus05-b128": {"algo": "model", "explore_bonus": 0.05, "train_steps": 32, "model_batch": 128},
    "ppo": {"algo": "ppo"},
    "reinforce": {"algo": "reinforce"},
}
