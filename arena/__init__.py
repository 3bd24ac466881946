"""The arena: games (PettingZoo envs and batched engines), agents, matches, evaluation.

Everything else in tlm stands on this package; it imports nothing from the layers
above it. Importing it registers the built-in agents (``random``, ``heuristic``,
``perfect``, ``alphabeta:D``); the kinds of upper layers (``mcts:N``, ``sb3:PATH``,
``rllib:DIR``, ``league:DIR/NAME``) load through entry points on first use.
"""

from arena.adapter import PettingZooEngine
from arena.agents import (
    RandomAgent,
    agent_usages,
    make_agent,
    parse_int_argument,
    register_agent,
    register_loader,
)
from arena.core import (
    Agent,
    Engine,
    IllegalActionError,
    PolicyAgent,
    State,
    TlmError,
    masked_argmax,
    masked_softmax,
    sample_from,
    uniform_legal,
)
from arena.eval_report import EvalReport, TeacherLabels, eval_report
from arena.evaluation import (
    EvalRow,
    evaluate,
    summarize,
    top1_agreement,
    top1_agrees,
    wilson_interval,
)
from arena.games import Game, get_game, list_games, make_engine, register_game
from arena.human import play_human
from arena.matches import (
    Decision,
    MatchResult,
    MatchTally,
    Pairing,
    max_batch,
    min_shard_games,
    play_match_tallies,
    play_match_tally,
    play_matches,
    play_matches_many,
)
from arena.players import (
    AlphaBetaConnectFour,
    HeuristicAgent,
    PerfectTicTacToe,
    exact_strength,
)
from arena.runners import (
    LocalRunner,
    RayRunner,
    ShardPlan,
    make_runner,
    register_payload,
    start_local_ray,
)
from arena.runstate import write_bytes_atomic, write_json_atomic
from arena.streams import RowGenerator, rows_rng

__all__ = [
    "Agent",
    "AlphaBetaConnectFour",
    "Decision",
    "Engine",
    "EvalReport",
    "EvalRow",
    "Game",
    "HeuristicAgent",
    "IllegalActionError",
    "LocalRunner",
    "MatchResult",
    "MatchTally",
    "Pairing",
    "PerfectTicTacToe",
    "PettingZooEngine",
    "PolicyAgent",
    "RandomAgent",
    "RayRunner",
    "RowGenerator",
    "ShardPlan",
    "State",
    "TeacherLabels",
    "TlmError",
    "agent_usages",
    "eval_report",
    "evaluate",
    "exact_strength",
    "get_game",
    "list_games",
    "make_agent",
    "make_engine",
    "make_runner",
    "masked_argmax",
    "max_batch",
    "min_shard_games",
    "masked_softmax",
    "parse_int_argument",
    "play_human",
    "play_match_tallies",
    "play_match_tally",
    "play_matches",
    "play_matches_many",
    "register_agent",
    "register_game",
    "register_loader",
    "register_payload",
    "rows_rng",
    "sample_from",
    "start_local_ray",
    "summarize",
    "top1_agreement",
    "top1_agrees",
    "uniform_legal",
    "wilson_interval",
    "write_bytes_atomic",
    "write_json_atomic",
]
