"""Expert iteration behind the learner protocol (:mod:`teachers.learner`).

:class:`SearchLearner` is a student network whose own search is its teacher. One
:meth:`SearchLearner.train` call is one step of expert iteration against the opponents
it was given:

1. the student guides the fast batched PUCT
   (:class:`teachers.mcts.labeller.SearchLabeller`: its policy as priors, its value at
   the leaves, Dirichlet noise at the root, moves sampled from the visit counts for
   the first ``temperature_plies`` plies, optionally playout-cap randomization), which
   plays about ``steps`` moves against the opponents
   (:func:`teachers.search.games.play_training_games`; an opponent named like the
   learner means search against search);
2. every fully searched move is labelled with the root visit distribution and a value
   target (:func:`teachers.mcts.labeller.search_labels`) and joins the replay window
   (:class:`teachers.search.replay.ReplayWindow`, the latest ``replay_size``
   positions);
3. the student is fitted on the window for ``epochs`` epochs (KL to the visit
   distributions plus ``value_weight`` times the value's squared error, AdamW, every
   symmetric image too: :func:`students.fit.fit_arrays`, the fit expert iteration
   uses), and guides the next call's search.

Unlike :func:`distill.iterate.iterate` there is no gate: the league's ratings judge
the learner.

How it plays outside its training games (:meth:`SearchLearner.agent` and
:meth:`SearchLearner.snapshot`): with ``play_with_search_sims = 0`` (the default) it is
its raw student, greedy: one forward pass a move, so rating matches and other
learners' training stay cheap, and its rating measures what the student learned. With
``N > 0`` it is the student's search with ``N`` simulations (no root noise, the most
visited move), stronger and slower; its snapshots are then ``puct:PATH,sims=N,c=C``.

Randomness: the seed initializes the student and seeds the learner's generator (the
training games' opponents and match seeds) and a torch generator (the fit's batches).
:meth:`SearchLearner.save` writes the student (safetensors and JSON,
:func:`students.save_student`), AdamW's state (:mod:`students.training_state`), the
replay window (Parquet) and ``learner.json`` (counters, settings and both generators'
states); nothing is pickled. A learner restored from it trains exactly as the one that
never stopped (with one torch thread, or the same thread count).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from arena.core import Agent, TlmError
from arena.games import Game, get_game
from arena.runners import Runner
from arena.runstate import write_json_atomic
from students import StudentAgent, build_student, load_net, save_student
from students.fit import FitArrays, FitConfig, fit_arrays, make_optimizer, value_targets
from students.training_state import (
    load_optimizer,
    save_optimizer,
    set_torch_generator_state,
    torch_generator_state,
)
from teachers.learner import TrainReport, opponent_weights, using_torch_threads
from teachers.mcts.labeller import SearchLabeller, SelfPlaySettings, search_labels
from teachers.mcts.puct import PUCT
from teachers.mcts.puct_agent import PUCTAgent, leaf_function
from teachers.search.games import play_training_games
from teachers.search.replay import ReplayWindow
from teachers.search.settings import SearchSettings

STATE_FILE = "learner.json"
"""Counters, settings and generator states of a saved learner (JSON)."""

STUDENT_DIR = "student"
"""The student checkpoint inside a saved learner or a snapshot."""

REPLAY_DIR = "replay"
"""The replay window (a Parquet dataset) inside a saved learner."""


def self_play_settings(settings: SearchSettings) -> SelfPlaySettings:
    """How the learner's search plays and labels its training games."""
    sims = settings.simulations
    return SelfPlaySettings(
        sims=sims, fast_sims=min(settings.fast_simulations or sims, sims),
        full_share=settings.full_search_share, c_puct=settings.c_puct,
        dirichlet_alpha=settings.dirichlet_alpha,
        dirichlet_fraction=settings.dirichlet_fraction, temperature=1.0,
        temperature_plies=settings.temperature_plies, opening_plies=settings.opening_plies,
        proven_targets=settings.proven_targets,
    )


class SearchLearner:
    """A student trained by expert iteration against opponents picked from outside.

    Attributes:
        name: the learner's name (its agent's name too).
        backend: ``"search"``.
        game: the game.
        settings: how it searches, plays and fits.
        net: the student network (its live agent and its search share it).
        total_steps: the learner's training moves since it was created.
        games: training games played since it was created.
        replay: the replay window.
    """

    backend = "search"

    def __init__(
        self,
        name: str,
        game: str | Game,
        seed: int,
        settings: SearchSettings | None = None,
        *,
        torch_threads: int | None = 1,
        runner: Runner | None = None,
    ) -> None:
        """Build a fresh learner.

        Args:
            name: the learner's name.
            game: the game (one the fast search plays: tic-tac-toe, connect four).
            seed: initializes the student and seeds the learner's generators.
            settings: search, play and fit settings (default: :class:`SearchSettings`).
            torch_threads: torch intra-op threads while training (``None``: leave them).
            runner: where the training games are played (default: this process).

        Raises:
            TlmError: a game the search does not play, a student that does not fit it,
                or a bad thread count.
        """
        self.name = name
        self.game = get_game(game)
        self.settings = settings or SearchSettings()
        try:
            self.settings.check(self.game)
        except TlmError as error:
            raise TlmError(f"learner {name}: {error}") from None
        if torch_threads is not None and torch_threads <= 0:
            raise TlmError(f"learner {name}: torch_threads must be positive, got {torch_threads}")
        self.torch_threads = torch_threads
        self.runner = runner
        s = self.settings
        self.net = build_student(s.student, self.game, seed).eval()
        self.fit_config = FitConfig(
            epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay,
            loss="kl", value_weight=s.value_weight, augment=s.augment)
        self.optimizer = make_optimizer(self.net, self.fit_config)
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        self._generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, 0]).generate_state(1)[0]))
        self.replay = ReplayWindow(self.game, s.replay_size)
        self.total_steps = 0
        self.games = 0
        self._agent = self._live_agent()

    def _live_agent(self) -> Agent:
        student = StudentAgent(self.net, greedy=True, name=self.name)
        sims = self.settings.play_with_search_sims
        if not sims:
            return student
        # No evaluation cache: the weights change under it between train() calls.
        search = PUCT(self.game, leaf_function(student), sims, c_puct=self.settings.c_puct)
        agent = PUCTAgent(self.game, search, temperature=0.0)
        agent.name = self.name
        return agent

    def _moves_per_game(self) -> float:
        """The learner's moves a training game gives, from its past games; before any,
        the most a game can last (a move a board cell), so a first call plays too few
        games rather than too many and then plays the rest."""
        if self.games:
            return self.total_steps / self.games
        return float(np.prod(self.game.obs_shape[:-1]))

    def train(
        self, steps: int, opponents: Sequence[Agent], weights: Sequence[float] | None = None
    ) -> TrainReport:
        """Play about ``steps`` moves of the learner's search against ``opponents`` (each
        game's drawn with probabilities ``weights``, uniform when ``None``), add the
        labelled moves to the replay window and fit the student on it.

        Raises:
            TlmError: no opponents, bad weights or steps.
        """
        w = opponent_weights(self.name, steps, opponents, weights)
        start = time.perf_counter()
        with using_torch_threads(self.torch_threads):
            guide = StudentAgent(self.net, greedy=True, name=self.name)
            labeller = SearchLabeller(self.game, guide, self_play_settings(self.settings))
            played = play_training_games(
                self.game, labeller, self.name, opponents, w, steps, self._rng,
                moves_per_game=self._moves_per_game(), first_game_id=self.games,
                runner=self.runner)
            labelled = search_labels(played.positions, self.settings.value_target)
            self.replay.add(labelled)
            play_s = time.perf_counter() - start
            losses: dict[str, float] = {}
            if len(self.replay):
                p = self.replay.positions
                data = FitArrays(p.obs, p.mask, p.probs, value_targets(p.value, p.outcome))
                losses = fit_arrays(self.net, self.game, data, self.fit_config,
                                    self.optimizer, self._generator)
        self.total_steps += played.moves
        self.games += played.games
        extra = {**losses, "labelled": float(len(labelled)), "replay": float(len(self.replay)),
                 "play_s": play_s, "fit_s": time.perf_counter() - start - play_s}
        counted = sum(played.counted.values())
        if counted:
            extra["score"] = sum(played.points.values()) / counted
        return TrainReport(
            steps=played.moves, games=played.games, total_steps=self.total_steps,
            win_rate=played.win_rate(), wall_s=time.perf_counter() - start, extra=extra)

    def spec(self, checkpoint: Path) -> str:
        """The agent spec of a student checkpoint as this learner plays it."""
        sims = self.settings.play_with_search_sims
        if not sims:
            return str(checkpoint)
        return f"puct:{checkpoint},sims={sims},c={self.settings.c_puct!r}"

    def snapshot(self, path: Path) -> str:
        """Write the student as ``path/student`` (safetensors and JSON); return its spec:
        the checkpoint's path, or ``puct:path/student,sims=N,c=C`` when the learner
        plays with its search."""
        path.mkdir(parents=True, exist_ok=False)
        save_student(self.net, path / STUDENT_DIR, provenance={
            "method": "search-learner", "learner": self.name, "steps": self.total_steps,
            "seed": self.net.seed})
        return self.spec(path / STUDENT_DIR)

    def agent(self) -> Agent:
        """The live policy, named after the learner: the raw student, greedy, or its
        search with ``play_with_search_sims`` simulations. It follows the weights."""
        return self._agent

    def save(self, path: Path) -> None:
        """Write the student, AdamW's state, the replay window, counters and generator
        states into ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        save_student(self.net, path / STUDENT_DIR, provenance={
            "method": "search-learner", "learner": self.name, "steps": self.total_steps,
            "seed": self.net.seed})
        save_optimizer(self.optimizer, path)
        self.replay.save(path / REPLAY_DIR)
        write_json_atomic(path / STATE_FILE, {
            "name": self.name,
            "backend": self.backend,
            "game": self.game.name,
            "settings": self.settings.model_dump(mode="json"),
            "total_steps": self.total_steps,
            "games": self.games,
            "rng": self._rng.bit_generator.state,
            "torch_rng": torch_generator_state(self._generator),
        })

    def restore(self, path: Path) -> None:
        """Read what :meth:`save` wrote.

        Raises:
            TlmError: missing or damaged files, or a state of another backend, game or
                student.
        """
        try:
            state = json.loads((path / STATE_FILE).read_text())
        except (OSError, ValueError) as error:
            raise TlmError(f"cannot restore learner {self.name} from {path}: {error}") from None
        if state.get("backend") != self.backend or state.get("game") != self.game.name:
            raise TlmError(
                f"{path} holds a {state.get('backend')} learner for {state.get('game')}, "
                f"not a {self.backend} learner for {self.game.name}"
            )
        net = load_net(path / STUDENT_DIR, self.game)
        if net.spec != self.net.spec:
            raise TlmError(f"{path} holds a {net.spec} student, not this learner's "
                           f"{self.net.spec}")
        self.net.use_heads(net.heads)
        self.net.load_state_dict(net.state_dict())
        self.net.eval()
        load_optimizer(self.optimizer, path)
        self.replay.load(path / REPLAY_DIR)
        try:
            self.total_steps = int(state["total_steps"])
            self.games = int(state["games"])
            self._rng.bit_generator.state = state["rng"]
            set_torch_generator_state(self._generator, state["torch_rng"])
        except (KeyError, TypeError, ValueError) as error:
            raise TlmError(f"cannot restore learner {self.name} from {path}: "
                           f"bad state ({error!r})") from None

    def close(self) -> None:
        """Nothing to release: the learner holds no workers."""
