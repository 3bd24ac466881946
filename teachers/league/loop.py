"""The league loop: learners train against the league's picks, play rated matches, resume.

:func:`run_league` runs rounds of a validated :class:`teachers.league.config.LeagueConfig`
in a league directory (its store is :class:`teachers.league.store.LeagueStore`):

1. each learner, in config order, gets opponents from its
   :class:`teachers.league.matchmaking.Matchmaker` (the picks are kept in the store, so
   a resumed round trains against the same ones), trains ``steps_per_round`` against
   them and, every ``snapshot_every`` steps or when its training score passes
   ``snapshot_win_rate``, leaves a frozen snapshot in the league;
2. the round's rating matches are played (each learner against every reference,
   every other learner and a few snapshots whose results are still uncertain), seats
   alternating, each recorded in its own transaction under a key naming the round
   and the pair, so a replayed round never counts a match twice;
3. ratings are recomputed from the whole log, curves written (store scalars and
   TensorBoard), every learner's full training state checkpointed, and the round
   counter advanced, all in one transaction.

Every seed derives from the league's seed, the round and the pair
(``np.random.SeedSequence``), and a learner's own randomness is in its checkpoint, so
the same seed gives the same league and a league killed at any moment and run again
redoes the unfinished round exactly: no match lost or doubled, ratings equal to the
ones recomputed from the log.

One process writes a league at a time: :func:`run_league` holds the league directory's
lock (:func:`arena.runstate.output_lock`, ``.NAME.lock`` beside it) from before the store is
opened until it is closed, so a second run on the same directory is refused with the
pid of the first and touches nothing. Readers (``tlm league status`` and ``report``)
take no lock.

A first Ctrl-C or SIGTERM (:class:`arena.runstate.StopHandler`) stops the league after
the current rating match, or at once while a learner trains (that round is redone on
resume). Learners are built by :func:`teachers.league.learners.make_learner` from their
config and driven only through the protocol of :mod:`teachers.learner`.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from arena.agents import make_agent
from arena.core import Agent, PolicyAgent, TlmError
from arena.games import Game, get_game
from arena.matches import play_matches
from arena.ratings import MatchRecord, Rating, elo_ratings
from arena.runstate import RunInterrupted, StopHandler, output_lock
from teachers.league.config import LeagueConfig, LearnerConfig, check_config
from teachers.league.learners import make_learner
from teachers.league.matchmaking import Matchmaker, pfsp_weights, win_rates
from teachers.league.progress import LeagueOutcome, LeagueProgress, Progress
from teachers.league.store import LeagueStore, resolve_spec, staged_checkpoint
from teachers.learner import Learner, TrainReport
from teachers.selfplay import sampling

# -- the loop ----------------------------------------------------------------------------


def _seed(*words: int) -> int:
    """A 31-bit seed derived from the league's words (seed, round, kind, index)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0] & 0x7FFFFFFF)


def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(words)))


_PICK, _EVAL, _MATCH, _LEARNER = 1, 2, 3, 4
"""Seed words telling apart the streams derived from the league seed."""


def _config_without_stop(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "stop"}


def play_pair(
    game: Game,
    agent_a: Agent,
    agent_b: Agent,
    n_games: int,
    seed: int,
    opening_plies: int = 0,
    runner: Any = None,
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Play one rating match; A's (wins, draws, losses) as first mover, then as second.

    Args:
        game: the game.
        agent_a: agent A.
        agent_b: agent B.
        n_games: games (seats alternate).
        seed: the match's seed.
        opening_plies: random opening moves of every game.
        runner: where to play (``None``: here, in this process).
    """
    result = play_matches(game, agent_a, agent_b, n_games, seed=seed,
                          opening_plies=opening_plies, runner=runner)
    out = result.outcome
    seats = np.asarray(result.seat_a)

    def triple(s: int) -> tuple[int, int, int]:
        o = out[seats == s]
        return int((o > 0).sum()), int((o == 0).sum()), int((o < 0).sum())

    return triple(0), triple(1)


class _League:
    """One run of the loop over an open store (see :func:`run_league`)."""

    def __init__(self, config: LeagueConfig, store: LeagueStore, references: dict[str, Agent],
                 progress: Progress | None, stop: StopHandler, runner: Any) -> None:
        self.config = config
        self.store = store
        self.directory = store.directory
        self.game = get_game(config.game)
        self.progress = progress
        self.stop = stop
        self.runner = runner
        self.references = references
        self.agents: dict[str, Agent] = dict(references)
        self.learners: dict[str, Learner] = {}
        self.sampled: dict[str, tuple[Agent, Agent]] = {}
        self.matchmakers = {
            lc.name: Matchmaker(lc.matchmaking, lc.weighting, lc.role, lc.reference_share)
            for lc in config.learners
        }
        self.timing = {"train": 0.0, "match": 0.0, "rating_phase": 0.0, "load": 0.0,
                       "checkpoint": 0.0, "bookkeeping": 0.0}
        self.view = LeagueProgress()
        self.anchor = ["random", *references]
        self._writer: Any = None
        self._round_start = time.perf_counter()

    # -- setup ---------------------------------------------------------------------

    def learner_seed(self, index: int) -> int:
        return _seed(self.config.seed, _LEARNER, index)

    def setup(self) -> None:
        """Register missing members and build (or restore) every learner."""
        store = self.store
        with store.transaction():
            for ref in self.config.references:
                if not store.has_agent(ref.name):
                    store.add_agent(ref.name, "reference", ref.spec)
        for i, lc in enumerate(self.config.learners):
            learner = make_learner(lc, self.game, self.directory / "learners" / lc.name,
                                   self.learner_seed(i), self.config.torch_threads)
            self.learners[lc.name] = learner
            state = store.get_state(f"learner/{lc.name}")
            if state is None:
                self.checkpoint_learner(lc.name, 0, first=True)
            else:
                learner.restore(self.directory / state["checkpoint"] / "state")
            self.agents[lc.name] = learner.agent()
            self.view.learner_steps[lc.name] = self.total_steps(lc.name)
        self.view.games = int(store.get_state("games", 0))
        self.view.ratings = self.ratings_from_state()

    def total_steps(self, name: str) -> int:
        state = self.store.get_state(f"learner/{name}") or {}
        return int(state.get("total_steps", 0))

    def checkpoint_learner(self, name: str, rounds_done: int, first: bool = False,
                           extra_state: dict[str, Any] | None = None) -> None:
        """Write the learner's state and policy as ``learners/NAME/rNNNNNN`` and record it
        (the store update joins the caller's transaction when there is one)."""
        learner = self.learners[name]
        rel = f"learners/{name}/r{rounds_done:06d}"
        final = self.directory / rel
        with staged_checkpoint(final, replace=True) as tmp:
            learner.save(tmp / "state")
            spec = learner.snapshot(tmp / "policy").replace(str(tmp), rel)
        state = {"checkpoint": rel, "round": rounds_done, **(extra_state or {})}
        if first:
            role = next(lc.role for lc in self.config.learners if lc.name == name)
            with self.store.transaction():
                if self.store.has_agent(name):
                    self.store.set_checkpoint(name, final / "policy", spec)
                else:
                    lc = next(lc for lc in self.config.learners if lc.name == name)
                    self.store.add_agent(name, "learner", spec, checkpoint=final / "policy",
                                         info={"league_role": role, "backend": lc.backend})
                self.store.set_state(f"learner/{name}", {**state, "total_steps": 0})
        else:
            self.store.set_checkpoint(name, final / "policy", spec)
            self.store.set_state(f"learner/{name}", state)

    def ratings_from_state(self) -> dict[str, Rating]:
        stored = self.store.get_state("ratings", {}) or {}
        return {n: Rating(n, float(v[0]), float(v[1]), float(v[2]), int(v[3]))
                for n, v in stored.items()}

    def agent(self, name: str) -> Agent:
        """The agent of a league member (snapshots loaded once, after a hash check)."""
        agent = self.agents.get(name)
        if agent is None:
            record = self.store.verify(name)
            agent = make_agent(resolve_spec(self.store, record.spec), self.game)
            agent.name = name
            self.agents[name] = agent
        return agent

    def training_agent(self, name: str, sample: bool) -> Agent:
        """The agent a learner trains against: learner-made ones sampling their policy
        when asked (:func:`teachers.selfplay.sampling`; greedy networks are
        deterministic, so a learner would meet the same few games again and again)."""
        agent = self.agent(name)
        if not sample or name in self.references or not isinstance(agent, PolicyAgent):
            return agent
        inner, sampled = self.sampled.get(name, (None, agent))
        if inner is not agent:
            sampled = sampling(agent)
            self.sampled[name] = (agent, sampled)
        return sampled

    # -- a round -------------------------------------------------------------------

    def run_round(self, r: int) -> None:
        cfg = self.config
        self.view.round = r
        reports: dict[str, TrainReport] = {}
        for i, lc in enumerate(cfg.learners):
            picks = self.picks(r, i, lc.name)
            opponents = [self.training_agent(n, lc.sample_opponents) for n, _ in picks]
            self.emit("train", f"{lc.name} trains against "
                      + ", ".join(f"{n} ({w:.2f})" for n, w in picks))
            t = time.perf_counter()
            with self.stop.interruptible():
                report = self.learners[lc.name].train(
                    lc.steps_per_round, opponents, [w for _, w in picks])
            self.timing["train"] += time.perf_counter() - t
            reports[lc.name] = report
            self.view.learner_steps[lc.name] = report.total_steps
            if report.games:
                self.view.learner_scores[lc.name] = _mean_score(report)
            self.maybe_snapshot(r, i, lc, report)

        t = time.perf_counter()
        try:
            self.play_rating_matches(r)
        finally:
            self.timing["rating_phase"] += time.perf_counter() - t

        self.emit("commit", f"round {r}: checkpointing")
        t = time.perf_counter()
        ratings = self.rate()
        self.timing["bookkeeping"] += time.perf_counter() - t
        self.commit(r, reports, ratings)

    def picks(self, r: int, i: int, name: str) -> list[tuple[str, float]]:
        """The learner's opponents this round, drawn once and kept in the store."""
        t = time.perf_counter()
        key = f"picks/{r}/{name}"
        stored = self.store.get_state(key)
        if stored is None:
            mm = self.matchmakers[name]
            lc = self.config.learners[i]
            stored = [[n, w] for n, w in mm.pick(name, self.store, _rng(
                self.config.seed, _PICK, r, i), lc.opponents_per_round)]
            self.store.set_state(key, stored)
        self.timing["bookkeeping"] += time.perf_counter() - t
        return [(str(n), float(w)) for n, w in stored]

    def maybe_snapshot(self, r: int, i: int, lc: LearnerConfig, report: TrainReport) -> None:
        own = [a for a in self.store.agents("snapshot") if a.parent == lc.name]
        last = max((int(a.info.get("steps", 0)) for a in own
                    if int(a.info.get("round", -1)) < r), default=0)
        reason = ""
        if lc.snapshot_every is not None and report.total_steps - last >= lc.snapshot_every:
            reason = "steps"
        elif (lc.snapshot_win_rate is not None and report.games
              and _mean_score(report) >= lc.snapshot_win_rate):
            reason = "win_rate"
        if not reason:
            return
        name = f"{lc.name}-r{r:04d}"
        if self.store.has_agent(name):
            return  # written before the league was stopped; the redone round is identical
        t = time.perf_counter()
        rel = f"snapshots/{name}"
        final = self.directory / rel
        with staged_checkpoint(final, replace=True) as tmp:
            spec = self.learners[lc.name].snapshot(tmp / "policy").replace(str(tmp), rel)
        self.store.add_agent(name, "snapshot", spec, checkpoint=final, parent=lc.name,
                             info={"round": r, "order": i, "steps": report.total_steps,
                                   "reason": reason})
        self.timing["checkpoint"] += time.perf_counter() - t
        self.emit("train", f"snapshot {name} ({reason}, {report.total_steps} steps)")

    def rating_pairs(self, r: int) -> list[tuple[str, str]]:
        """The round's rating matches, chosen once (from the log of earlier rounds) and kept."""
        key = f"pairs/{r}"
        stored = self.store.get_state(key)
        if stored is not None:
            return [(str(a), str(b)) for a, b in stored]
        cfg = self.config
        names = [lc.name for lc in cfg.learners]
        pairs: list[tuple[str, str]] = []
        for i, a in enumerate(names):
            pairs += [(a, ref.name) for ref in cfg.references]
            if cfg.evaluation.learners:
                pairs += [(a, b) for b in names[i + 1:]]
        k = cfg.evaluation.snapshots_per_learner
        snaps = [s.name for s in self.store.agents("snapshot")]
        if k and snaps:
            log = self.store.matches()
            rng = _rng(cfg.seed, _EVAL, r)
            for a in names:
                p = pfsp_weights(win_rates(log, a, snaps), "variance") + 1e-6
                chosen = rng.choice(len(snaps), size=min(k, len(snaps)), replace=False,
                                    p=p / p.sum())
                pairs += [(a, snaps[j]) for j in sorted(chosen.tolist())]
        self.store.set_state(key, [list(p) for p in pairs])
        return pairs

    def play_rating_matches(self, r: int) -> None:
        cfg = self.config
        t = time.perf_counter()
        pairs = self.rating_pairs(r)
        self.timing["bookkeeping"] += time.perf_counter() - t
        for j, (a, b) in enumerate(pairs):
            key = f"r{r:06d}/{j:03d}/{a}/{b}"
            t = time.perf_counter()
            done = self.store.has_match(key)
            self.timing["bookkeeping"] += time.perf_counter() - t
            if done:
                continue
            seed = _seed(cfg.seed, _MATCH, r, j)
            n = cfg.evaluation.games_per_pair
            t = time.perf_counter()
            agent_a, agent_b = self.agent(a), self.agent(b)
            self.timing["load"] += time.perf_counter() - t
            t = time.perf_counter()
            first, second = play_pair(self.game, agent_a, agent_b, n, seed,
                                      cfg.evaluation.opening_plies, self.runner)
            dt = time.perf_counter() - t
            self.timing["match"] += dt
            self.view.match_seconds += dt
            self.view.rating_games += n
            t = time.perf_counter()
            self.store.record_match(MatchRecord(key=key, round=r, agent_a=a, agent_b=b,
                                                seed=seed, games=n, a_first=first,
                                                a_second=second))
            self.timing["bookkeeping"] += time.perf_counter() - t
            w, d = first[0] + second[0], first[1] + second[1]
            self.emit("match", f"{a} vs {b}: +{w} ={d} -{n - w - d}")
            if self.stop.requested:
                raise RunInterrupted("stopped on request")

    def rate(self) -> dict[str, Rating]:
        names = [a.name for a in self.store.agents()]
        return elo_ratings(self.store.matches(), anchor=self.anchor, names=names)

    def commit(self, r: int, reports: dict[str, TrainReport], ratings: dict[str, Rating]) -> None:
        """End of round ``r``: checkpoints, ratings, curves and the round counter at once."""
        store = self.store
        games = int(store.get_state("games", 0))
        games += sum(rep.games for rep in reports.values())
        games += self.config.evaluation.games_per_pair * len(self.rating_pairs(r))
        t = time.perf_counter()
        wall = float(store.get_state("wall_s", 0.0)) + self.round_wall()
        with store.transaction():
            for name, rep in reports.items():
                self.checkpoint_learner(name, r + 1, extra_state={"total_steps": rep.total_steps,
                                                                  "games": games})
                store.log_scalar(f"learner/{name}/score", r, _mean_score(rep))
                store.log_scalar(f"learner/{name}/steps", r, rep.total_steps)
                for opp, p in rep.win_rate.items():
                    store.log_scalar(f"learner/{name}/win_rate/{opp}", r, p)
                for k, v in rep.extra.items():
                    if math.isfinite(v):
                        store.log_scalar(f"learner/{name}/{k}", r, v)
            for n, rating in ratings.items():
                store.log_scalar(f"elo/{n}", r, rating.elo)
            store.set_state("ratings", {n: [x.elo, x.lo, x.hi, x.games]
                                        for n, x in ratings.items()})
            store.set_state("games", games)
            store.set_state("wall_s", wall)
            store.set_state("round", r + 1)
        self.timing["checkpoint"] += time.perf_counter() - t
        for name in reports:
            self.drop_old_checkpoints(name, r + 1)
        self.write_tensorboard(r, reports, ratings)
        self.view.ratings = ratings
        self.view.games = games
        self.view.rounds_done += 1
        self.emit("done", self.round_line(r, reports, ratings))

    def round_wall(self) -> float:
        now = time.perf_counter()
        dt = now - self._round_start
        self._round_start = now
        return dt

    def drop_old_checkpoints(self, name: str, keep: int) -> None:
        keep_dir = f"r{keep:06d}"
        for d in (self.directory / "learners" / name).glob("r*"):
            if d.is_dir() and d.name != keep_dir:
                shutil.rmtree(d, ignore_errors=True)

    def write_tensorboard(self, r: int, reports: dict[str, TrainReport],
                          ratings: dict[str, Rating]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.directory / "tensorboard"))
        w = self._writer
        for name, rep in reports.items():
            w.add_scalar(f"learner/{name}/score", _mean_score(rep), r)
            for opp, p in rep.win_rate.items():
                w.add_scalar(f"learner/{name}/win_rate/{opp}", p, r)
            for k, v in rep.extra.items():
                w.add_scalar(f"learner/{name}/{k}", v, r)
        for n, rating in ratings.items():
            w.add_scalar(f"elo/{n}", rating.elo, r)
        w.flush()

    def round_line(self, r: int, reports: dict[str, TrainReport],
                   ratings: dict[str, Rating]) -> str:
        parts = [f"round {r}:"]
        for name, rep in reports.items():
            elo = ratings.get(name)
            elo_txt = f" elo {elo.elo:.0f} [{elo.lo:.0f}, {elo.hi:.0f}]" if elo else ""
            parts.append(f"{name} {rep.total_steps} steps, train score "
                         f"{_mean_score(rep):.2f},{elo_txt};")
        parts.append(f"{self.view.games} games, {self.view.games_per_second:.0f} rating games/s")
        return " ".join(parts)

    def emit(self, phase: str, message: str) -> None:
        self.view.phase = phase
        self.view.message = message
        if self.progress is not None:
            self.progress(self.view)

    def stop_reason(self) -> str:
        stop = self.config.stop
        r = int(self.store.get_state("round", 0))
        if stop.max_rounds is not None and r >= stop.max_rounds:
            return "max_rounds"
        if stop.max_games is not None and int(self.store.get_state("games", 0)) >= stop.max_games:
            return "max_games"
        if (stop.max_minutes is not None
                and float(self.store.get_state("wall_s", 0.0)) >= 60 * stop.max_minutes):
            return "max_minutes"
        return ""

    def loop(self) -> tuple[str, int]:
        done = 0
        self._round_start = time.perf_counter()
        while True:
            reason = self.stop_reason()
            if reason:
                return reason, done
            if self.stop.requested:
                raise RunInterrupted("stopped on request")
            self.run_round(int(self.store.get_state("round", 0)))
            done += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        for learner in self.learners.values():
            learner.close()


def _mean_score(report: TrainReport) -> float:
    if "score" in report.extra:
        return float(report.extra["score"])
    rates = list(report.win_rate.values())
    return float(np.mean(rates)) if rates else 0.0


def open_or_create(config: LeagueConfig, directory: Path) -> LeagueStore:
    """The league in ``directory``: opened if it exists (same config, ``stop`` aside),
    else created. Nothing is written when the config does not fit.

    Raises:
        TlmError: a league with another config, or a non-empty directory that is not
            a league.
    """
    data = config.model_dump(mode="json")
    if (directory / LeagueStore.DB_NAME).exists():
        store = LeagueStore.open(directory)
        if _config_without_stop(store.config) != _config_without_stop(data):
            store.close()
            raise TlmError(f"{directory} holds a league started with another config "
                           "(only stop: may change when resuming)")
        return store  # new stop: limits apply from now on; the store keeps the first ones
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise TlmError(f"{directory} exists and is neither empty nor a league directory")
    return LeagueStore.create(directory, config.game, data)


def run_league(
    config: LeagueConfig,
    directory: str | Path,
    *,
    progress: Progress | None = None,
    stop: StopHandler | None = None,
    runner: Any = None,
) -> LeagueOutcome:
    """Run (or resume) the league in ``directory`` until a ``stop:`` limit or a signal.

    Args:
        config: the validated config.
        directory: the league directory (created if new; resumed if it holds this
            league).
        progress: called after every training, match and round.
        stop: a :class:`arena.runstate.StopHandler` (installed by the caller: a signal
            stops the league after the current rating match, or at once while a
            learner trains, whose round is redone on resume); ``None``: run to the
            limits.
        runner: where rating matches are played (``None``: in this process).

    Returns:
        how it ended.

    Raises:
        TlmError: a bad config or directory, or a league another live process is running
            (``league D is being written by pid N``); nothing is written then.
    """
    references = check_config(config)
    directory = Path(directory).resolve()
    start = time.perf_counter()
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TlmError(f"league {directory}: cannot create {directory.parent} "
                       f"({error.strerror})") from None
    with output_lock(directory, what="league"):
        store = open_or_create(config, directory)
        league = _League(config, store, references, progress, stop or StopHandler(), runner)
        try:
            signum = None
            try:
                league.setup()
                reason, done = league.loop()
            except (StopHandler.Cut, RunInterrupted):
                reason, done = league.stop.reason or "signal", league.view.rounds_done
                signum = league.stop.signum
            ratings = league.view.ratings
            league.timing["total"] = time.perf_counter() - start
            return LeagueOutcome(int(store.get_state("round", 0)), done, reason, signum,
                                 ratings, dict(league.timing), league.view.rating_games)
        finally:
            league.close()
            store.close()
