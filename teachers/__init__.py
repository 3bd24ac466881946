"""Teachers: agents that know a game well enough to label it for students.

Importing this package registers the teacher agent specs (``mcts:N``, ...).
"""

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

__all__ = [
    "MCTS",
    "Evaluator",
    "LeafEvaluation",
    "Leaves",
    "MCTSAgent",
    "NetworkEvaluator",
    "RandomRolloutEvaluator",
    "SearchResult",
    "SearchTrees",
    "reach_leaves",
]
