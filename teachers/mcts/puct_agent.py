"""The student-guided search agent (spec ``puct:PATH``): a student's PUCT search.

``puct:PATH[,sims=N][,c=C][,t=T][,noise=ALPHA][,cache=ENTRIES][,sym=0|1][,bf16=0|1]
[,onnx=0|1]`` plays the fast batched PUCT (:class:`teachers.mcts.puct.PUCT`) guided
by the agent that ``PATH`` names (a student checkpoint, in practice): its policy as
priors, its value at the leaves. It keeps one evaluation cache for its whole life, so
the positions a search evaluated are free for the next move's search.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from arena.agents import make_agent, register_agent
from arena.core import PolicyAgent, State, TlmError, masked_argmax, sample_from
from arena.games import Game, get_game
from arena.streams import Random
from teachers.mcts.cache import DEFAULT_ENTRIES, EvaluationCache
from teachers.mcts.inference import (
    AgentInference,
    LeafFn,
    NetworkInference,
    OnnxInference,
)
from teachers.mcts.kernels import GAME_IDS
from teachers.mcts.puct import MAX_SIMULATIONS, PUCT, tree_bytes
from teachers.mcts.search import SearchResult

PUCT_USAGE = (
    "puct:PATH[,sims=N][,c=C][,t=T][,noise=ALPHA][,cache=ENTRIES][,sym=0|1][,bf16=0|1]"
    "[,onnx=0|1] "
    "(PATH = a student checkpoint with a value head; N = simulations a move, default "
    "400; C = c_puct, default 1.5; T = move temperature, 0 plays the most visited move "
    "(default); ALPHA = root Dirichlet noise, default none; ENTRIES = evaluation cache "
    "size, 0 for none; sym = share evaluations between symmetric positions, default 0; "
    "bf16 = bfloat16 inference, default 0; onnx = fp32 inference on ONNX Runtime, default 0)"
)
DEFAULT_SIMULATIONS = 400
TREE_BYTES_PER_SHARD = 256 * 2**20
"""The tree memory a match's shard may take: sets ``max_batch`` (16 to 1,024 games)."""
SEARCH_SHARD_GAMES = 128
"""The smallest shard of a search's games sent to a Ray worker (``min_shard_games``): a
game of hundreds of simulations a move is costly enough that a match of a few hundred
games is worth spreading, and the network's leaf batches stay large (the search runs
about 1.5-2x the simulations a second over 256 trees that it does over 64:
``scripts/bench_search.py``)."""


class PUCTAgent(PolicyAgent):
    """Plays by the student-guided batched PUCT from the engine state of its rows.

    ``policy`` is the root visit distribution, ``value`` the root value; ``act`` plays
    the most visited move (temperature 0: a proven win first, never a proven loss when
    another move is open), or samples ``visits ** (1 / temperature)``. All of its
    randomness comes from the generator it is given (one draw per row), so a game gets
    the same moves whatever batch it is searched in.

    Args:
        game: ``connect_four`` or ``tictactoe``.
        search: the search.
        temperature: of ``act``'s choice (0: the most visited move).
        seed: seeds the generator of ``policy`` and ``value``.
    """

    needs_state = True
    uses_observation = False

    def __init__(self, game: str | Game, search: PUCT, *, temperature: float = 0.0,
                 seed: int = 0) -> None:
        g = get_game(game)
        if not math.isfinite(temperature) or temperature < 0:
            raise TlmError(f"temperature must be >= 0, got {temperature}")
        self.game = g.name
        self.name = f"puct:sims={search.n_simulations}"
        self.engine = g.make_engine()
        self.puct = search
        self.temperature = temperature
        self.greedy = temperature == 0
        per_game = tree_bytes(1, search.n_simulations, g.num_actions)
        self.max_batch = int(np.clip(TREE_BYTES_PER_SHARD // per_game, 16, 1024))
        self.min_shard_games = SEARCH_SHARD_GAMES
        self._rng = np.random.default_rng(seed)

    def search(self, state: State | None, rng: Random | None = None) -> SearchResult:
        """Search from every row of ``state``."""
        if state is None:
            raise TlmError(f"agent {self.name!r} searches and needs the engine state of its rows")
        return self.puct.search(self.engine, state, self._rng if rng is None else rng)

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return self.search(state).policy(1.0)

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return self.search(state).value

    def act(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            state: State | None = None) -> np.ndarray:
        result = self.search(state, rng)
        if self.greedy:
            return masked_argmax(result.policy(0.0), result.legal)
        return sample_from(result.policy(self.temperature), rng)


def leaf_function(agent: PolicyAgent, *, bf16: bool = False, onnx: bool = False) -> LeafFn:
    """How the search evaluates leaves with ``agent``: its network in one forward pass
    when it has one (``agent.net``, as students do; in bf16 or on ONNX Runtime if asked),
    else its ``policy`` and ``value``.

    Raises:
        TlmError: the agent gives no value, needs engine states, bf16 or onnx was asked
            for an agent without a network, bf16 on a CPU without native bfloat16, onnx
            without onnxruntime, or both.
    """
    if bf16 and onnx:
        raise TlmError("puct: bf16 and onnx exclude each other (ONNX Runtime runs fp32)")
    if not isinstance(agent, PolicyAgent) or not agent.has_value:
        raise TlmError(f"agent {agent.name!r} has no value head: puct needs a student with one "
                       f"(its value at the leaves)")
    if agent.needs_state:
        raise TlmError(f"agent {agent.name!r} needs engine states, so it cannot guide a search")
    net = getattr(agent, "net", None)
    if isinstance(net, torch.nn.Module):
        if onnx:
            return OnnxInference(net)
        return NetworkInference(net, precision="bf16" if bf16 else "fp32")
    if bf16 or onnx:
        mode = "bf16" if bf16 else "onnx"
        raise TlmError(f"agent {agent.name!r} has no network to run in {mode}")
    return AgentInference(agent)


def _option(option: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise TlmError(f"bad value in puct option {option!r} ({PUCT_USAGE})") from None
    if not math.isfinite(x):
        raise TlmError(f"bad value in puct option {option!r} ({PUCT_USAGE})")
    return x


def _whole(option: str, x: float, low: int, high: int, what: str) -> int:
    if x != int(x) or not low <= x <= high:
        raise TlmError(f"puct option {option!r}: {what} must be a whole number in "
                       f"{low:,}..{high:,}")
    return int(x)


def make_puct_agent(arg: str | None, game: Game) -> PUCTAgent:
    """The ``puct:PATH,...`` spec (see :data:`PUCT_USAGE`).

    Raises:
        TlmError: a missing path, a checkpoint of another game or without a value head,
            an unknown option or a value out of range (simulations in
            1..:data:`~teachers.mcts.puct.MAX_SIMULATIONS`).
    """
    if not arg:
        raise TlmError(f"missing student path in agent spec ({PUCT_USAGE})")
    path, *options = [part.strip() for part in arg.split(",")]
    sims, c_puct, temperature, alpha = DEFAULT_SIMULATIONS, 1.5, 0.0, None
    entries, flags = DEFAULT_ENTRIES, {"sym": False, "bf16": False, "onnx": False}
    for option in options:
        key, sep, text = option.partition("=")
        if not sep:
            raise TlmError(f"unknown puct option {option!r} ({PUCT_USAGE})")
        x = _option(option, text)
        if key == "sims":
            sims = _whole(option, x, 1, MAX_SIMULATIONS, "simulations")
        elif key == "c":
            if x < 0:
                raise TlmError(f"puct option {option!r}: c_puct must be >= 0")
            c_puct = x
        elif key == "t":
            if x < 0:
                raise TlmError(f"puct option {option!r}: the temperature must be >= 0")
            temperature = x
        elif key == "noise":
            if x <= 0:
                raise TlmError(f"puct option {option!r}: the Dirichlet alpha must be > 0")
            alpha = x
        elif key == "cache":
            entries = _whole(option, x, 0, 1 << 28, "the cache size")
        elif key in flags:
            flags[key] = _whole(option, x, 0, 1, key) == 1
        else:
            raise TlmError(f"unknown puct option {option!r} ({PUCT_USAGE})")
    if not path:
        raise TlmError(f"missing student path in agent spec ({PUCT_USAGE})")
    guide = make_agent(path, game)
    if guide.game is not None and guide.game != game.name:
        raise TlmError(f"agent {path!r} plays {guide.game}, not {game.name}")
    if not isinstance(guide, PolicyAgent):
        raise TlmError(f"agent {path!r} gives no policy: puct needs a student with a value head")
    network = leaf_function(guide, bf16=flags["bf16"], onnx=flags["onnx"])
    cache = EvaluationCache(entries, game.num_actions) if entries > 0 else None
    search = PUCT(game, network, sims, c_puct=c_puct, dirichlet_alpha=alpha, cache=cache,
                  symmetry=flags["sym"])
    return PUCTAgent(game, search, temperature=temperature)


def register() -> None:
    """Make ``puct:PATH,...`` an agent spec (the ``tlm.agents`` entry point ``puct``)."""
    register_agent("puct", make_puct_agent, PUCT_USAGE, games=tuple(GAME_IDS),
                   needs_argument=True)


register()
