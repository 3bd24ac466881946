"""Teachers: agents that know a game well enough to label it for students, the
self-play training that makes them, and the generation of their games into datasets.

- exact solvers and search live in ``arena.players`` (``perfect``, ``alphabeta:D``) and
  are teachers as they are: policy agents with values;
- ``mcts:N`` (:mod:`teachers.mcts`): batched UCT over the engines;
- :mod:`teachers.learner`: the learner protocol every training backend follows;
  :mod:`teachers.selfplay`: the one self-play loop over it (``tlm teach``);
- one package per backend: :mod:`teachers.sb3` (MaskablePPO; ``sb3:PATH``),
  :mod:`teachers.rllib` (RLlib PPO; ``rllib:DIR``) and :mod:`teachers.search`
  (expert iteration: a student taught by its own search; student checkpoints or
  ``puct:PATH``);
- :mod:`teachers.league`: self-play leagues (config, loop, store, matchmaking,
  report; ``league:DIR/NAME``);
- :mod:`teachers.generate` and :mod:`teachers.datasets`: labelled games as Parquet.

Agent specs of this layer (``mcts``, ``sb3``, ``rllib``, ``league``) are entry points
of ``tlm.agents``: ``arena.make_agent`` loads them on first use.
"""

from teachers.datasets import DatasetWriter, Positions, load_dataset, read_manifest
from teachers.generate import (
    Exploration,
    TeacherLabeller,
    collect_positions,
    generate_dataset,
    with_temperature,
)
from teachers.learner import Learner, TrainReport
from teachers.mcts import (
    MCTS,
    Evaluator,
    LeafEvaluation,
    Leaves,
    MCTSAgent,
    NetworkEvaluator,
    RandomRolloutEvaluator,
    SearchResult,
    SearchTrees,
    reach_leaves,
)
from teachers.sb3 import (
    ArenaGymEnv,
    SB3Agent,
    SB3Learner,
    load_sb3_agent,
    load_sb3_model,
    train_selfplay,
)
from teachers.search import SearchLearner, SearchSettings
from teachers.selfplay import (
    DEFAULT_MIX,
    LearnerPlan,
    SelfPlayConfig,
    SnapshotPool,
    run_selfplay,
)

__all__ = [
    "DEFAULT_MIX",
    "MCTS",
    "ArenaGymEnv",
    "DatasetWriter",
    "Evaluator",
    "Exploration",
    "LeafEvaluation",
    "Learner",
    "LearnerPlan",
    "Leaves",
    "MCTSAgent",
    "NetworkEvaluator",
    "Positions",
    "RandomRolloutEvaluator",
    "SB3Agent",
    "SB3Learner",
    "SearchLearner",
    "SearchResult",
    "SearchSettings",
    "SearchTrees",
    "SelfPlayConfig",
    "SnapshotPool",
    "TeacherLabeller",
    "TrainReport",
    "collect_positions",
    "generate_dataset",
    "load_dataset",
    "load_sb3_agent",
    "load_sb3_model",
    "reach_leaves",
    "read_manifest",
    "run_selfplay",
    "train_selfplay",
    "with_temperature",
]
