"""Populations of opponents for students that learn inside a series of games: the
families a student trains against, and the families held out to measure it.

A student with memory learns, from the series it plays against the training families,
to read whoever it faces and answer with that player's best response. Whether it has
learnt to *read* an opponent, rather than to recognise the few it trained on, shows
only against players it never met: whole families are held out, never just seeds or
parameters of a family it trained on.

:data:`TICTACTOE_STYLES` holds out the players that favour one side of the board
(``prefer:left``, ``right``, ``top``, ``bottom``, each at ``p`` = 1, 0.75 and 0.5:
when nothing is to win or block, they play a free square of their side with
probability ``p``). They are the most exploitable family there is (the exact best
response scores 0.19 above the perfect player against them, on average over the
twelve), so adaptation matters there, and their habit is unlike any a training family
has: the training players prefer corners, edges, the center or one diagonal (regions
that no rotation or reflection turns into one side of the board), make random mistakes
(``noisy``), miss some lines (``blind``), search a few plies (``minimax``), or play
perfectly, heuristically or at random. The more kinds of preference a student meets in
training, the better it reads one it never met: with the diagonal players added (36
members instead of 30) the preset student's game-10 score against the held-out
families rose by 0.05 G. Exploiting a one-side player takes moves the perfect player
would punish, which the student must learn to risk only once the opponent has shown
that it errs.

:data:`CONNECT_FOUR_STYLES` is the connect-four population: its habits are over columns,
and it holds out the players that favour the centre (see there).
"""

from __future__ import annotations

from dataclasses import dataclass

from arena import Agent, TlmError, get_game, make_agent
from arena.games import Game


@dataclass(frozen=True)
class Population:
    """Opponent families for in-context learning.

    Attributes:
        name: how configs name it.
        game: the game its members play.
        training: the specs of the members a student trains against.
        held_out: the specs of the members it is measured against, from families
            absent from ``training``.
    """

    name: str
    game: str
    training: tuple[str, ...]
    held_out: tuple[str, ...]

    def agents(self, which: str, g: Game | None = None) -> list[Agent]:
        """The members of ``training`` or ``held_out`` as agents.

        Raises:
            TlmError: a member's spec is not a valid agent spec for the game.
        """
        specs = {"training": self.training, "held_out": self.held_out}[which]
        game = g if g is not None else get_game(self.game)
        return [make_agent(spec, game) for spec in specs]


_PROBABILITIES = ("", ",p=0.75", ",p=0.5")

TICTACTOE_STYLES = Population(
    name="tictactoe-styles",
    game="tictactoe",
    training=(
        *(f"prefer:{region}{p}" for region in ("corners", "edges", "center", "diag", "anti")
          for p in _PROBABILITIES),
        "noisy:0.1", "noisy:0.25", "noisy:0.5", "noisy:0.75",
        "blind:diagonals", "blind:rows", "blind:columns", "blind:diag", "blind:anti",
        "blind:row0", "blind:row1", "blind:row2", "blind:col0", "blind:col1", "blind:col2",
        "minimax:1", "minimax:2", "minimax:3",
        "heuristic", "random", "perfect",
    ),
    held_out=tuple(f"prefer:{side}{p}" for side in ("left", "right", "top", "bottom")
                   for p in _PROBABILITIES),
)
"""Tic-tac-toe players with styles: 36 training members, the 12 one-side players held
out (see the module)."""

CONNECT_FOUR_STYLES = Population(
    name="connect-four-styles",
    game="connect_four",
    training=(
        *(f"prefer:{region}{p}" for region in ("edges", "outer", "left", "right")
          for p in _PROBABILITIES),
        "noisy:0.05", "noisy:0.1", "noisy:0.25", "noisy:0.5",
        "blind:horizontal", "blind:vertical", "blind:diagonals",
        "alphabeta:2", "heuristic", "random",
    ),
    held_out=tuple(f"prefer:{region}{p}" for region in ("center", "inner")
                   for p in _PROBABILITIES),
)
"""Connect-four players with styles (:mod:`arena.players.c4_styles`): 22 training
members — ``alphabeta:2`` with a habit of playing the edge, outer, left or right
columns (``prefer:``), with random moves (``noisy:``), the players blind to lines of
one direction, ``alphabeta:2``, ``heuristic`` and ``random`` — and the six players that
favour the centre column or the three inner ones held out. Those are the strong
habits (``alphabeta:4`` scores about 0.43 to 0.86 against them; the search's best
response 0.72 to 0.90), so knowing the opponent is worth most against them."""

POPULATIONS: dict[str, Population] = {p.name: p for p in (TICTACTOE_STYLES,
                                                           CONNECT_FOUR_STYLES)}
"""Every population, by name."""

GAME_POPULATIONS = {"tictactoe": TICTACTOE_STYLES.name,
                    "connect_four": CONNECT_FOUR_STYLES.name}
"""The population a game's in-context runs use unless told otherwise."""


def population_for(game: str) -> Population:
    """The population of ``game``'s in-context runs.

    Raises:
        TlmError: the game has none.
    """
    if game not in GAME_POPULATIONS:
        raise TlmError(f"no opponent population for {game} (games with one: "
                       f"{', '.join(GAME_POPULATIONS)})")
    return POPULATIONS[GAME_POPULATIONS[game]]


def get_population(name: str) -> Population:
    """The population called ``name``.

    Raises:
        TlmError: no population has that name.
    """
    try:
        return POPULATIONS[name]
    except KeyError:
        raise TlmError(f"unknown population {name!r} (known: {', '.join(POPULATIONS)})"
                       ) from None
