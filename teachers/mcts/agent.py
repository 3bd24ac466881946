"""The MCTS agent (spec ``mcts:N``): plays from the engine state that matches hand it."""

from __future__ import annotations

import numpy as np

from arena.agents import parse_int_argument, register_agent
from arena.core import PolicyAgent, State, TlmError, masked_argmax, sample_from
from arena.games import Game, get_game
from teachers.mcts.evaluators import RandomRolloutEvaluator
from teachers.mcts.search import MCTS, SearchResult
from teachers.mcts.trees import SearchTrees

TREE_BYTES_PER_SHARD = 256 * 2**20
"""The tree memory a match's shard may take: sets ``max_batch`` (16 to 4,096 games)."""

SEARCH_GAMES = ("tictactoe", "connect_four")
"""Games with a fast engine, the only ones ``mcts:N`` plays."""


class MCTSAgent(PolicyAgent):
    """Plays by batched MCTS from the engine state of its rows.

    ``policy`` is the root visit distribution at ``temperature``; ``value`` is the
    root value estimate; ``act`` samples the policy, or plays the most visited move
    when ``greedy``. ``act`` draws all its randomness from the generator it is given;
    ``policy``, ``value`` and :meth:`search` without one use the agent's own generator,
    seeded at construction.

    Args:
        game: a game with a fast engine.
        mcts: the search.
        temperature: of the visit-count policy.
        greedy: ``act`` plays the most visited move instead of sampling.
        seed: seeds the agent's own generator.
    """

    needs_state = True
    uses_observation = False  # it reads the engine state, so matches may skip observations

    def __init__(
        self,
        game: str | Game,
        mcts: MCTS,
        *,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int = 0,
    ) -> None:
        g = get_game(game)
        if not g.has_engine:
            raise TlmError(f"mcts needs a game with a fast engine, not {g.name}")
        if temperature < 0:
            raise TlmError(f"temperature must be >= 0, got {temperature}")
        self.game = g.name
        self.name = f"mcts:{mcts.n_simulations}"
        per_game = SearchTrees.nbytes(1, mcts.n_simulations, g.num_actions)
        self.max_batch = int(np.clip(TREE_BYTES_PER_SHARD // per_game, 16, 4096))
        self.engine = g.make_engine()
        self.mcts = mcts
        self.temperature = temperature
        self.greedy = greedy
        self._rng = np.random.default_rng(seed)

    def search(self, state: State | None, rng: np.random.Generator | None = None) -> SearchResult:
        """Search from every row of ``state``; both policy and value come from the result."""
        if state is None:
            raise TlmError(f"agent {self.name!r} searches and needs the engine state of its rows")
        return self.mcts.search(self.engine, state, self._rng if rng is None else rng)

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return self.search(state).policy(self.temperature)

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return self.search(state).value

    def act(
        self,
        obs: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        result = self.search(state, rng)
        if self.greedy:
            return masked_argmax(result.policy(0.0), mask)
        return sample_from(result.policy(self.temperature), rng)


MCTS_USAGE = "mcts:N"
DEFAULT_SIMULATIONS = 200
MAX_SIMULATIONS = 1_000_000
"""The most simulations ``mcts:N`` takes (its trees grow by one node per simulation)."""
UCT_C = 1.4
"""UCT's exploration constant for ``mcts:N`` (about sqrt 2; fewest connect-four blunders)."""


def make_mcts_agent(arg: str | None, game: Game) -> MCTSAgent:
    """The ``mcts:N`` spec: N simulations with random rollouts, playing its most visited move.

    Its priors are uniform, so it selects by UCT (which tries every move before
    repeating one). Its ``policy`` (the visit counts at temperature 1) is what it teaches.
    """
    n = parse_int_argument(arg, MCTS_USAGE, default=DEFAULT_SIMULATIONS, maximum=MAX_SIMULATIONS)
    search = MCTS(RandomRolloutEvaluator(1), n, rule="uct", c_puct=UCT_C)
    return MCTSAgent(game, search, greedy=True)




def register() -> None:
    """Make ``mcts:N`` an agent spec (the ``tlm.agents`` entry point of ``mcts``)."""
    register_agent("mcts", make_mcts_agent, MCTS_USAGE, games=SEARCH_GAMES)


register()
