"""The self-play player of expert iteration: a student-guided search that plays and
labels its own decisions.

:class:`SearchLabeller` is an agent of the arena: in a match it searches every row it
moves in (:class:`teachers.mcts.puct.PUCT`), plays from the visit counts (sampled at
``temperature`` for the first ``temperature_plies`` plies of a game, the most visited
move after), and leaves the search's labels of those rows in :attr:`labels` — the root
visit distribution and the root value — for an observer to collect. So expert
iteration's self-play games are ordinary matches, collected like any teacher's games
(:func:`teachers.collect_positions`), sharded on any runner with the same result.

Playout-cap randomization (KataGo): each move is searched in full (``sims``) with
probability ``full_share`` and with ``fast_sims`` otherwise; only full searches give
a policy label (the fast ones' probabilities are zero, and their value NaN), so the
games are longer per second and the labels as good.

Where the search proved a root move's outcome (MCTS-Solver), its visit counts can still
spread over slower wins and proven losses; with ``proven_targets`` the label says what
was proven instead: all of it on the quickest proven win, none on a proven loss.

:func:`search_labels` keeps the fully searched positions of such games and sets the
value target the student learns (the game's outcome, the search's root value, or
their mean); expert iteration (:mod:`distill.iterate`) and the search learner
(:mod:`teachers.search`) both learn from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from arena.core import Agent, PolicyAgent, State, TlmError, masked_argmax, sample_from
from arena.games import Game, get_game
from arena.runners import AgentPayload, agent_payload, build_agent, register_payload
from arena.streams import rows_rng
from teachers.datasets import Positions
from teachers.generate import Exploration, with_temperature
from teachers.mcts.cache import EvaluationCache
from teachers.mcts.puct import PUCT, tree_bytes
from teachers.mcts.puct_agent import SEARCH_SHARD_GAMES, leaf_function

TREE_BYTES_PER_SHARD = 256 * 2**20
"""The tree memory a shard may take (sets ``max_batch``)."""

ValueTarget = Literal["outcome", "search", "mix"]
"""What a student's value head learns from a search's games: the game's outcome, the
search's root value, or their mean."""

VALUE_TARGETS: tuple[ValueTarget, ...] = ("outcome", "search", "mix")


@dataclass(frozen=True)
class SelfPlaySettings:
    """How the search plays and labels its self-play games.

    Attributes:
        sims: simulations of a full search (the labelled moves).
        fast_sims: simulations of a fast search (playout-cap randomization).
        full_share: probability that a move gets a full search.
        c_puct: PUCT's exploration constant.
        dirichlet_alpha: root noise concentration (``None``: no noise).
        dirichlet_fraction: the noise's weight in the root priors.
        temperature: of the sampled moves.
        temperature_plies: plies of a game whose move is sampled; later the most
            visited move is played.
        opening_plies: uniformly random plies that open every game (for nobody).
        cache_entries: the evaluation cache's size (0: none).
        proven_targets: label with what the search proved where it proved something
            (:meth:`teachers.mcts.SearchResult.proven_policy`: the quickest proven
            win, no proven loss), else with the visits.
    """

    sims: int = 200
    fast_sims: int = 32
    full_share: float = 1.0
    c_puct: float = 1.5
    dirichlet_alpha: float | None = 1.0
    dirichlet_fraction: float = 0.25
    temperature: float = 1.0
    temperature_plies: int = 10
    opening_plies: int = 0
    cache_entries: int = 1 << 18
    proven_targets: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.fast_sims <= self.sims:
            raise TlmError(f"fast_sims must be in 1..sims ({self.sims}), got {self.fast_sims}")
        if not 0.0 < self.full_share <= 1.0:
            raise TlmError(f"full_share must be in (0, 1], got {self.full_share}")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise TlmError(f"the move temperature must be > 0, got {self.temperature}")
        if self.temperature_plies < 0 or self.opening_plies < 0:
            raise TlmError("temperature_plies and opening_plies must be >= 0")


class SearchLabeller(Agent):
    """Plays the student-guided search and labels each decision (see the module).

    After each :meth:`act`, :attr:`labels` holds ``(probs, value)`` for those rows:
    the visit distribution at temperature 1, or what the search proved
    (``settings.proven_targets``), zero for a fast search; and the root value (NaN for
    a fast search).

    Args:
        game: ``connect_four`` or ``tictactoe``.
        guide: the student guiding the search (its policy and value, in one forward
            pass of its network).
        settings: how it searches and plays.
        bf16: run the guide's network in bfloat16 (where the CPU has it).
    """

    needs_state = True
    uses_observation = True

    def __init__(self, game: str | Game, guide: PolicyAgent, settings: SelfPlaySettings,
                 bf16: bool = False) -> None:
        g = get_game(game)
        self.game = g.name
        self.name = f"selfplay:sims={settings.sims}"
        self.engine = g.make_engine()
        self.guide = guide
        self.bf16 = bf16
        network = leaf_function(guide, bf16=bf16)
        self.settings = settings
        self.exploration = Exploration(opening_plies=settings.opening_plies)
        cache = (EvaluationCache(settings.cache_entries, g.num_actions)
                 if settings.cache_entries else None)

        def search(sims: int) -> PUCT:
            return PUCT(g, network, sims, c_puct=settings.c_puct,
                        dirichlet_alpha=settings.dirichlet_alpha,
                        dirichlet_fraction=settings.dirichlet_fraction, cache=cache)

        self.full = search(settings.sims)
        self.fast = search(settings.fast_sims) if settings.full_share < 1.0 else None
        per_game = tree_bytes(1, settings.sims, g.num_actions)
        self.max_batch = int(np.clip(TREE_BYTES_PER_SHARD // per_game, 16, 1024))
        self.min_shard_games = SEARCH_SHARD_GAMES
        self.labels: tuple[np.ndarray, np.ndarray] | None = None

    def act(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            state: State | None = None) -> np.ndarray:
        if state is None:
            raise TlmError(f"agent {self.name!r} searches and needs the engine state of its rows")
        n, s = len(mask), self.settings
        full = np.ones(n, dtype=bool)
        if self.fast is not None:
            full = rng.random(n) < s.full_share
        probs = np.zeros(mask.shape, dtype=np.float32)
        value = np.full(n, np.nan, dtype=np.float32)
        visits = np.zeros(mask.shape, dtype=np.float64)
        solved_best = np.zeros(n, dtype=np.int64)
        for rows, search in ((np.flatnonzero(full), self.full),
                             (np.flatnonzero(~full), self.fast)):
            if not rows.size or search is None:
                continue
            result = search.search(self.engine, self.engine.take(state, rows),
                                   rows_rng(rng, rows))
            visits[rows] = result.policy(1.0)
            solved_best[rows] = masked_argmax(result.policy(0.0), result.legal)
            if search is self.full:
                probs[rows] = result.proven_policy() if s.proven_targets else visits[rows]
                value[rows] = result.value
        self.labels = (probs, value)
        ply = np.asarray(obs).reshape(n, -1).sum(axis=1)
        early = np.flatnonzero(ply < s.temperature_plies)
        actions = solved_best
        if early.size:
            actions[early] = sample_from(with_temperature(visits[early], s.temperature),
                                         rows_rng(rng, early))
        return actions


def _labeller_payload(labeller: SearchLabeller) -> dict[str, Any]:
    return {"guide": agent_payload(labeller.guide), "bf16": labeller.bf16,
            "settings": dict(labeller.settings.__dict__)}


def _labeller_from_payload(data: dict[str, Any], game: Game) -> SearchLabeller:
    guide_payload: AgentPayload = data["guide"]
    guide = build_agent(guide_payload, game)
    if not isinstance(guide, PolicyAgent):
        raise TlmError(f"the search's guide {guide.name!r} gives no policy")
    return SearchLabeller(game, guide, SelfPlaySettings(**data["settings"]), data["bf16"])


register_payload(SearchLabeller, _labeller_payload, _labeller_from_payload)


def search_labels(data: Positions, value_target: ValueTarget) -> Positions:
    """The positions of ``data`` (collected from a :class:`SearchLabeller`) that a full
    search labelled, with the value target ``value_target``.

    Positions searched fast (playout-cap randomization: no policy label) are dropped.
    ``probs`` stay the labeller's (the root visits, or what the search proved);
    ``value`` becomes NaN for ``outcome`` (the fit then learns the game's outcome,
    :func:`students.fit.value_targets`), stays the root value for ``search``, and is
    the mean of the two for ``mix``.

    Raises:
        TlmError: an unknown value target.
    """
    if value_target not in VALUE_TARGETS:
        raise TlmError(f"unknown value target {value_target!r} "
                       f"(known: {', '.join(VALUE_TARGETS)})")
    data = data.select(data.probs.sum(axis=1) > 0)
    search = data.value
    if value_target == "outcome":
        data.value = np.full(len(data), np.nan, dtype=np.float32)
    elif value_target == "mix":
        data.value = (0.5 * (data.outcome + search)).astype(np.float32)
    return data
