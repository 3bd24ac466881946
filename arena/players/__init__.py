"""The fixed players of the arena, registered as agent specs at import.

- ``heuristic`` (:class:`HeuristicAgent`, tic-tac-toe and connect four): win, else
  block, else random;
- ``perfect`` (:class:`PerfectTicTacToe`): exact tic-tac-toe, with the exhaustive
  checks that measure any agent against the solved game;
- ``alphabeta:D[,t=T][,solve=K]`` (:class:`AlphaBetaConnectFour`): connect-four
  alpha-beta to depth D (policy temperature T, exact once at most K cells are empty);
- players with styles (:mod:`arena.players.styles`; on connect four
  :mod:`arena.players.c4_styles`): ``noisy:E``, ``prefer:REGION[,p=P]``,
  ``blind:LINES``, ``minimax:D`` (tic-tac-toe only).

All of them read PettingZoo observations only, so they play the real env and the
fast engines alike.
"""

from collections.abc import Callable

from arena.agents import AgentFactory, register_agent
from arena.core import Agent
from arena.games import Game
from arena.players.connect_four import (
    ALPHABETA_USAGE,
    AlphaBetaConnectFour,
    parse_alphabeta,
    play_moves,
    scores_to_policy,
)
from arena.players.heuristic import HeuristicAgent
from arena.players.styles import (
    BLIND_USAGE,
    MINIMAX_USAGE,
    NOISY_USAGE,
    PREFER_USAGE,
    StylePlayer,
    make_blind,
    make_minimax,
    make_noisy,
    make_prefer,
)
from arena.players.tictactoe import (
    N_NONTERMINAL,
    N_REACHABLE,
    ExhaustiveResult,
    PerfectTicTacToe,
    all_positions,
    candidate_moves,
    exact_strength,
    exhaustive_check,
    exhaustive_losses,
    move_values,
    optimal_move_accuracy,
    optimal_moves_mask,
    position_values,
)

register_agent(
    "heuristic",
    lambda arg, game: HeuristicAgent(game.name),
    "heuristic",
    games=("tictactoe", "connect_four"),
)
register_agent("perfect", lambda arg, game: PerfectTicTacToe(), "perfect", games=("tictactoe",))
def _style(make: Callable[[str | None, str], Agent]) -> AgentFactory:
    def factory(arg: str | None, game: Game) -> Agent:
        return make(arg, game.name)

    return factory


for _kind, _make, _usage in (("noisy", make_noisy, NOISY_USAGE),
                             ("prefer", make_prefer, PREFER_USAGE),
                             ("blind", make_blind, BLIND_USAGE),
                             ("minimax", make_minimax, MINIMAX_USAGE)):
    register_agent(_kind, _style(_make), _usage,
                   games=("tictactoe",) if _kind == "minimax" else ("tictactoe", "connect_four"),
                   needs_argument=True)
register_agent(
    "alphabeta",
    lambda arg, game: AlphaBetaConnectFour(*parse_alphabeta(arg)),
    "alphabeta:D[,t=T][,solve=K]",
    games=("connect_four",),
    needs_argument=True,
)

__all__ = [
    "ALPHABETA_USAGE",
    "N_NONTERMINAL",
    "N_REACHABLE",
    "AlphaBetaConnectFour",
    "ExhaustiveResult",
    "HeuristicAgent",
    "PerfectTicTacToe",
    "StylePlayer",
    "all_positions",
    "candidate_moves",
    "exact_strength",
    "exhaustive_check",
    "exhaustive_losses",
    "move_values",
    "optimal_move_accuracy",
    "optimal_moves_mask",
    "parse_alphabeta",
    "play_moves",
    "position_values",
    "scores_to_policy",
]
