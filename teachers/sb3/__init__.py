"""Stable-Baselines3 (sb3-contrib's MaskablePPO) as a learner backend.

- :mod:`~teachers.sb3.agent`: :class:`SB3Agent` (any SB3 actor-critic model as an
  arena agent) and the ``sb3:PATH.zip`` spec (an entry point of ``tlm.agents``);
- :mod:`~teachers.sb3.gym_view`: :class:`ArenaGymEnv`, one seat of an arena game as a
  Gymnasium environment;
- :mod:`~teachers.sb3.learner`: :class:`SB3Learner`, the learner protocol on
  MaskablePPO, :func:`sb3_plan` and :func:`train_selfplay` (``tlm teach --algo
  maskable_ppo``, kickstarting) through the one self-play loop.
"""

from teachers.sb3.agent import SB3Agent, load_sb3_agent, load_sb3_model, register
from teachers.sb3.gym_view import ArenaGymEnv
from teachers.sb3.learner import (
    DEFAULT_PPO,
    SB3Learner,
    SelfPlayRun,
    make_vec_env,
    sb3_plan,
    train_selfplay,
)

__all__ = [
    "DEFAULT_PPO",
    "ArenaGymEnv",
    "SB3Agent",
    "SB3Learner",
    "SelfPlayRun",
    "load_sb3_agent",
    "load_sb3_model",
    "make_vec_env",
    "register",
    "sb3_plan",
    "train_selfplay",
]
