"""The standard panel: fixed opponents per game, and one Elo that sums an agent up.

Each game with a panel has a fixed list of members (connect four: ``random``,
``heuristic``, ``alphabeta:1``, ``alphabeta:2``, ``alphabeta:4``, ``alphabeta:6``;
tic-tac-toe: ``random``, ``heuristic``, ``perfect``) and a number of uniformly random
opening plies (4 on connect four, so that deterministic players meet many different
games). Search players break exact ties at random.

An agent plays every member (seats alternating, :func:`arena.evaluate`); its scores
per member and the members' games among themselves (the *reference* games, fixed,
read from ``arena/data/panel_<game>.json`` or played on the spot at a small scale
when that file is missing or was made for another panel) go into one Bradley–Terry
fit (:func:`arena.ratings.elo_ratings`), anchored at ``random`` = 0. The
reference games pin the members' ratings, so the agent's Elo means the same thing
from one evaluation to the next, with a 95% interval. When a member's play changes,
bump :data:`REFERENCE_VERSION` and store new reference games with
:func:`write_reference` (``python -c "from arena.panel import PANELS, write_reference;
write_reference(PANELS['connect_four'])"``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from arena.agents import make_agent
from arena.core import Agent, TlmError
from arena.evaluation import EvalRow, evaluate
from arena.games import Game, get_game
from arena.ratings import MatchRecord, Rating, elo_ratings
from arena.runners import Runner
from arena.runstate import write_json_atomic

REFERENCE_DIR = Path(__file__).parent / "data"
REFERENCE_VERSION = 1
"""Bumped when a member's play changes, which makes stored reference games stale."""


@dataclass(frozen=True)
class Panel:
    """The fixed opponents of one game.

    Attributes:
        game: the game.
        members: agent specs, the anchor first.
        opening_plies: uniformly random first plies of every panel game.
        reference_games: games per pair of members in the stored reference games.
        fallback_games: games per pair when the reference games are played on the spot.
    """

    game: str
    members: tuple[str, ...]
    opening_plies: int
    reference_games: int = 400
    fallback_games: int = 40

    @property
    def anchor(self) -> str:
        """The member fixed at Elo 0."""
        return self.members[0]


PANELS: dict[str, Panel] = {
    "connect_four": Panel(
        "connect_four",
        ("random", "heuristic", "alphabeta:1", "alphabeta:2", "alphabeta:4", "alphabeta:6"),
        opening_plies=4,
    ),
    "tictactoe": Panel("tictactoe", ("random", "heuristic", "perfect"), opening_plies=0),
}


def panel_for(game: str | Game) -> Panel:
    """The panel of ``game``.

    Raises:
        TlmError: the game has no panel.
    """
    g = get_game(game)
    panel = PANELS.get(g.name)
    if panel is None:
        raise TlmError(f"no standard panel for {g.name} (panels: {', '.join(PANELS)})")
    return panel


def record_of(rows: list[EvalRow], agent: str, opponent: str, seed: int,
              key: str) -> MatchRecord:
    """The match of ``agent`` against ``opponent`` from its evaluation rows."""
    seat = {r.seat: r for r in rows if r.opponent == opponent}
    first, second = seat["first"], seat["second"]
    return MatchRecord(
        key=key, round=0, agent_a=agent, agent_b=opponent, seed=seed,
        games=first.games + second.games,
        a_first=(first.wins, first.draws, first.losses),
        a_second=(second.wins, second.draws, second.losses),
    )


def play_reference(panel: Panel, n_games: int, seed: int = 0,
                   runner: Runner | None = None) -> list[MatchRecord]:
    """Every pair of members plays ``n_games`` games (seats alternating)."""
    g = get_game(panel.game)
    agents = {spec: make_agent(spec, g) for spec in panel.members}
    seeds = np.random.SeedSequence([seed, 1]).generate_state(len(panel.members) ** 2)
    records = []
    for k, (a, b) in enumerate(combinations(panel.members, 2)):
        rows = evaluate(g, agents[a], [agents[b]], n_games, seed=int(seeds[k]),
                        opening_plies=panel.opening_plies, runner=runner)
        records.append(record_of(rows, a, b, int(seeds[k]), f"reference:{a}:{b}"))
    return records


def _reference_meta(panel: Panel, n_games: int, seed: int) -> dict[str, Any]:
    return {"version": REFERENCE_VERSION, "game": panel.game, "members": list(panel.members),
            "opening_plies": panel.opening_plies, "games": n_games, "seed": seed}


def reference_path(panel: Panel) -> Path:
    """Where the stored reference games of ``panel`` live."""
    return REFERENCE_DIR / f"panel_{panel.game}.json"


def write_reference(panel: Panel, path: str | Path | None = None, seed: int = 0,
                    runner: Runner | None = None) -> Path:
    """Play the reference games (``panel.reference_games`` a pair) and store them."""
    path = Path(path) if path is not None else reference_path(panel)
    records = play_reference(panel, panel.reference_games, seed, runner)
    doc = {**_reference_meta(panel, panel.reference_games, seed),
           "matches": [asdict(r) for r in records]}
    write_json_atomic(path, doc)
    return path


def reference_matches(panel: Panel, runner: Runner | None = None) -> list[MatchRecord]:
    """The members' games among themselves: stored ones if they fit the panel, else
    ``panel.fallback_games`` a pair played now (seed 0)."""
    path = reference_path(panel)
    if path.is_file():
        doc = json.loads(path.read_text())
        meta = _reference_meta(panel, doc.get("games", -1), doc.get("seed", -1))
        if all(doc.get(k) == v for k, v in meta.items()):
            return [MatchRecord(**{**m, "a_first": tuple(m["a_first"]),
                                   "a_second": tuple(m["a_second"])}) for m in doc["matches"]]
    return play_reference(panel, panel.fallback_games, 0, runner)


@dataclass(frozen=True)
class PanelResult:
    """An agent against the panel.

    Attributes:
        game: the game.
        agent: the agent's name in the ratings.
        games: games against each member.
        opening_plies: random first plies of every game.
        rows: per member and seat (``first``, ``second``, ``both``), as :func:`arena.evaluate`.
        elo: the agent's rating (anchor ``random`` = 0) with its 95% interval.
        ratings: every rating of the fit, members included.
    """

    game: str
    agent: str
    games: int
    opening_plies: int
    rows: list[EvalRow]
    elo: Rating
    ratings: dict[str, Rating] = field(default_factory=dict)

    def scores(self) -> dict[str, float]:
        """The agent's score (win 1, draw 0.5) against each member, both seats."""
        return {r.opponent: r.score for r in self.rows if r.seat == "both"}

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "game": self.game, "agent": self.agent, "games": self.games,
            "opening_plies": self.opening_plies,
            "results": [r.as_json() for r in self.rows],
            "elo": asdict(self.elo),
            "ratings": {n: asdict(r) for n, r in self.ratings.items()},
        }


def evaluate_panel(
    agent: Agent,
    game: str | Game,
    n_games: int = 200,
    seed: int = 0,
    *,
    runner: Runner | None = None,
) -> PanelResult:
    """Play ``agent`` against the game's panel and rate it with the reference games.

    Args:
        agent: the agent evaluated.
        game: a game with a panel (:data:`PANELS`).
        n_games: games against each member (seats alternating).
        seed: the evaluation's seed.
        runner: where the matches are played (default: this process).

    Raises:
        TlmError: the game has no panel, or ``n_games`` is not positive.
    """
    panel = panel_for(game)
    if n_games <= 0:
        raise TlmError(f"the number of games must be positive, got {n_games}")
    g = get_game(panel.game)
    members = [make_agent(spec, g) for spec in panel.members]
    rows = evaluate(g, agent, members, n_games, seed=seed,
                    opening_plies=panel.opening_plies, runner=runner)
    name = agent.name if agent.name not in panel.members else f"{agent.name} (evaluated)"
    records = reference_matches(panel, runner) + [
        record_of(rows, name, spec, seed, f"agent:{spec}") for spec in panel.members
    ]
    ratings = elo_ratings(records, anchor=panel.anchor)
    return PanelResult(game=g.name, agent=name, games=n_games,
                       opening_plies=panel.opening_plies, rows=rows, elo=ratings[name],
                       ratings=ratings)
