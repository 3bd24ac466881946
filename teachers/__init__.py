"""Teachers: agents that know a game well enough to label it for students, and the
generation of their games into datasets.

- exact solvers and search live in ``arena.players`` (``perfect``, ``alphabeta:D``) and
  are teachers as they are: policy agents with values;
- ``mcts:N`` (:mod:`teachers.mcts`): batched UCT over the engines;
- ``sb3:PATH`` (:mod:`teachers.sb3_teacher`): MaskablePPO trained by self-play through
  a Gymnasium view of the arena (:mod:`teachers.gym_view`);
- :mod:`teachers.generate` and :mod:`teachers.datasets`: labelled games as Parquet.

Importing this package registers the ``mcts`` and ``sb3`` agent specs.
"""

from teachers.datasets import DatasetWriter, Positions, load_dataset, read_manifest
from teachers.generate import (
    Exploration,
    TeacherLabeller,
    collect_positions,
    generate_dataset,
    with_temperature,
)
from teachers.gym_view import ArenaGymEnv
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
from teachers.sb3_teacher import (
    SB3Agent,
    SelfPlayCallback,
    SnapshotPool,
    load_sb3_agent,
    load_sb3_model,
    make_selfplay_env,
    register,
    train_maskable_ppo,
    train_selfplay,
)

register()

__all__ = [
    "MCTS",
    "ArenaGymEnv",
    "DatasetWriter",
    "Evaluator",
    "Exploration",
    "LeafEvaluation",
    "Leaves",
    "MCTSAgent",
    "NetworkEvaluator",
    "Positions",
    "RandomRolloutEvaluator",
    "SB3Agent",
    "SearchResult",
    "SearchTrees",
    "SelfPlayCallback",
    "SnapshotPool",
    "TeacherLabeller",
    "collect_positions",
    "generate_dataset",
    "load_dataset",
    "load_sb3_agent",
    "load_sb3_model",
    "make_selfplay_env",
    "reach_leaves",
    "read_manifest",
    "train_maskable_ppo",
    "train_selfplay",
    "with_temperature",
]
