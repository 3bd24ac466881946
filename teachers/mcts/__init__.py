"""Batched Monte-Carlo tree search over tlm's engines: evaluators, trees and the agent.

One search runs B games at once, one tree per game, and every simulation advances all
B trees together: selection is vectorised over the trees, the leaves of all games are
reached with one batch of engine calls, and they are evaluated together (one network
call per simulation for :class:`NetworkEvaluator`), which is what makes search cheap
enough to label many games.

The parts follow the usual split, one module each, in the order they build on
each other:

- :mod:`~teachers.mcts.leaves`: replaying the selected paths from their roots to reach
  the leaves (:func:`reach_leaves`);
- :mod:`~teachers.mcts.evaluators`: an *evaluator* gives the leaves' priors and values
  (:class:`RandomRolloutEvaluator`, :class:`NetworkEvaluator`);
- :mod:`~teachers.mcts.trees`: the *trees* (:class:`SearchTrees`) are flat arrays
  indexed ``[game, node, action]`` rather than node objects, so that one numpy
  operation serves every game;
- :mod:`~teachers.mcts.search`: the *search* (:class:`MCTS`) runs PUCT (or UCT)
  selection, expansion with the evaluator's priors, and backup with proven outcomes
  (MCTS-Solver), and returns root visit counts and values (:class:`SearchResult`);
- :mod:`~teachers.mcts.agent`: the *agent* (:class:`MCTSAgent`, spec ``mcts:N``) plays
  from the engine state that :func:`arena.matches.play_matches` hands it.

The fast student-guided search is the same PUCT with its tree work compiled, for
connect four and tic-tac-toe:

- :mod:`~teachers.mcts.kernels`: the games' rules, observations and canonical keys on
  bitboards, compiled by numba;
- :mod:`~teachers.mcts.cache`: the evaluation cache (:class:`EvaluationCache`) that
  transpositions, symmetric positions and the next moves' searches share;
- :mod:`~teachers.mcts.inference`: one forward pass per batch of leaves
  (:class:`NetworkInference`: inference mode, channels-last, bf16);
- :mod:`~teachers.mcts.puct`: the search (:class:`PUCT`), returning a
  :class:`SearchResult` like :class:`MCTS`;
- :mod:`~teachers.mcts.puct_agent`: its agent (:class:`PUCTAgent`, spec
  ``puct:PATH,sims=N``), guided by a student checkpoint.
"""

from teachers.mcts.agent import (
    DEFAULT_SIMULATIONS,
    MCTS_USAGE,
    SEARCH_GAMES,
    UCT_C,
    MCTSAgent,
    make_mcts_agent,
    register,
)
from teachers.mcts.cache import EvaluationCache
from teachers.mcts.evaluators import (
    Evaluator,
    LeafEvaluation,
    NetworkEvaluator,
    PolicyValueFn,
    RandomRolloutEvaluator,
)
from teachers.mcts.inference import NetworkInference
from teachers.mcts.leaves import COMPACT_BELOW, Leaves, reach_leaves
from teachers.mcts.puct import PUCT, SearchStats
from teachers.mcts.puct_agent import PUCTAgent, make_puct_agent
from teachers.mcts.search import MCTS, SearchResult
from teachers.mcts.trees import SearchTrees

__all__ = [
    "COMPACT_BELOW",
    "DEFAULT_SIMULATIONS",
    "MCTS",
    "MCTS_USAGE",
    "SEARCH_GAMES",
    "UCT_C",
    "EvaluationCache",
    "Evaluator",
    "LeafEvaluation",
    "Leaves",
    "MCTSAgent",
    "NetworkEvaluator",
    "NetworkInference",
    "PUCT",
    "PUCTAgent",
    "PolicyValueFn",
    "RandomRolloutEvaluator",
    "SearchResult",
    "SearchStats",
    "SearchTrees",
    "make_mcts_agent",
    "make_puct_agent",
    "reach_leaves",
    "register",
]
