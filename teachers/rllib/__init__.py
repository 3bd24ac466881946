"""RLlib PPO as a learner backend: one module per part.

- :mod:`~teachers.rllib.settings`: :class:`RLlibPPOSettings` and :func:`rllib_plan`
  (the learner for ``tlm teach --algo rllib_ppo``);
- :mod:`~teachers.rllib.env`: the multi-agent self-play env (module slots, opponents
  played inside);
- :mod:`~teachers.rllib.learner`: :class:`~teachers.rllib.learner.RLlibLearner`, the
  learner protocol on RLlib's new API stack (Ray started and stopped with it);
- :mod:`~teachers.rllib.module`: the action-masking PPO module;
- :mod:`~teachers.rllib.checkpoint`: module checkpoints without pickle and the
  ``rllib:DIR`` agent (an entry point of ``tlm.agents``).

Importing this package imports neither Ray nor RLlib: the env, the learner and the
module do, when imported.
"""

from teachers.rllib.checkpoint import RLlibAgent, load_rllib_agent, register
from teachers.rllib.settings import RLlibPPOSettings, rllib_plan

__all__ = ["RLlibAgent", "RLlibPPOSettings", "load_rllib_agent", "register", "rllib_plan"]
