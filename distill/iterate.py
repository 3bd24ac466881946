"""Expert iteration: a search guided by the student is the student's teacher.

Each iteration, the fast batched PUCT (:class:`teachers.mcts.puct.PUCT`) whose priors
and leaf values come from the best student so far plays games against itself
(Dirichlet noise at the root, moves sampled from the visit counts for the first plies,
playout-cap randomization), as matches sharded on a runner
(:func:`self_play`); the student learns the search's visit-count distributions and the
games' outcomes (or the search's values)
over a window of the latest iterations' positions (with ``anchor_share``, beside a
share of the start teacher's labelled positions, drawn afresh every iteration from
those the start distillation kept); the improved student guides the
next search, which is stronger for it. The student starts blank, or from a short
distillation of a teacher (``start``, through :func:`distill.run.distill`).

Every iteration the trained student is measured (panel scores, exact figures on
tic-tac-toe, optimal / blunder rates on solver-labelled positions) and gated: it
replaces the student that guides the search only if it scores at least
``gate_threshold`` against it. Elo comes from the gating and panel matches, anchored
at ``random`` (:func:`arena.ratings.elo_ratings`).

The run directory is built in the staging directory of :func:`arena.runstate.staged_directory`
and every finished iteration is committed there: its student (``iterations/NNNN``),
then the run's checkpoint (:func:`arena.runstate.save_checkpoint`): the optimizer state
(:mod:`students.training_state`), the replay window (a Parquet dataset) and, last,
``state.json`` with the settings, the iteration counter, the curve, the match log and
the generator states. A run killed at any point (``kill -9`` included) and started
again with the same settings resumes from the last committed iteration and ends with
the same student as an uninterrupted run; one of other settings is refused
(:func:`arena.runstate.refuse_other_settings`). It shares the fit
(:func:`distill.train.fit`, over :mod:`students.fit`) and the curve writer
(:mod:`distill.curves`) with distillation, and its self-play labels
(:func:`teachers.mcts.labeller.search_labels`) with the league's search learner
(:mod:`teachers.search`).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena import (
    Agent,
    Game,
    TlmError,
    evaluate,
    exact_strength,
    get_game,
    make_agent,
    write_json_atomic,
)
from arena.positions import PositionSet, evaluate_positions, load_positions
from arena.ratings import MatchRecord, elo_ratings
from arena.runners import Runner
from arena.runstate import (
    RunInterrupted,
    clear_checkpoint,
    empty_directory,
    load_checkpoint,
    refuse_other_settings,
    save_checkpoint,
    settings_defaults,
    staged_directory,
)
from distill.curves import Panel, write_curve
from distill.iterate_config import DEFAULT_PANELS, IterateConfig
from distill.train import FitConfig, fit, make_optimizer
from students import StudentAgent, StudentNet, build_student, load_net, param_count, save_student
from students.training_state import (
    load_optimizer,
    save_optimizer,
    set_torch_generator_state,
    torch_generator_state,
)
from teachers.datasets import DatasetWriter, Positions, load_dataset
from teachers.generate import collect_positions
from teachers.mcts.inference import bf16_native
from teachers.mcts.labeller import SearchLabeller, SelfPlaySettings, search_labels

Progress = Callable[[dict[str, Any]], None]

GAME_STRIDE = 1_000_000
"""Self-play game ids are ``iteration * GAME_STRIDE + game``, so the replay window can
tell each position's iteration."""

REPLAY = "replay"
"""The replay window's dataset in the run's checkpoint."""


@dataclass
class IterationState:
    """What a run has committed: everything but the weights, the optimizer and the data.

    Attributes:
        iteration: the last finished iteration (0: the start student, measured).
        best: the iteration whose student guides the search.
        curve: one row of measures per finished iteration.
        matches: the gating and panel matches, as :class:`MatchRecord` fields.
        rng: the self-play generator's state (numpy ``bit_generator.state``).
        torch_rng: the training generator's state, base64.
    """

    iteration: int
    best: int
    curve: list[dict[str, Any]]
    matches: list[dict[str, Any]]
    rng: dict[str, Any]
    torch_rng: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IterationState:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def _student_dir(run: Path, iteration: int) -> Path:
    return run / "iterations" / f"{iteration:04d}" / "student"


def self_play(
    game: Game,
    guide: StudentNet,
    config: IterateConfig,
    iteration: int,
    runner: Runner | None = None,
) -> Positions:
    """``config.games_per_iteration`` games of the search guided by ``guide`` against
    itself, every fully searched position labelled by it.

    The games are matches of :class:`teachers.mcts.labeller.SearchLabeller` (the fast
    batched PUCT, root noise, moves sampled from the visits for the first
    ``temperature_plies`` plies, playout-cap randomization), collected like any
    teacher's games (:func:`teachers.collect_positions`), so they are sharded on
    ``runner`` with the same result. ``probs`` are the root visit distributions; the
    value target follows ``config.value_target`` (the outcome, the root value or their
    mean). Positions searched fast (no policy label) are dropped
    (:func:`teachers.mcts.labeller.search_labels`). A share ``config.opening_share`` of
    the games (their own match) opens with random plies, 1 to
    ``config.opening_plies_max`` of them, drawn for the iteration.
    """
    settings = SelfPlaySettings(
        sims=config.simulations,
        fast_sims=min(config.fast_simulations or config.simulations, config.simulations),
        full_share=config.full_search_share, c_puct=config.c_puct,
        dirichlet_alpha=config.dirichlet_alpha, dirichlet_fraction=config.dirichlet_fraction,
        temperature=1.0, temperature_plies=config.temperature_plies,
        proven_targets=config.proven_targets,
    )
    bf16 = bf16_native() if config.bf16 == "auto" else bool(config.bf16)
    guide_agent = StudentAgent(guide, greedy=True)
    labeller = SearchLabeller(game, guide_agent, settings, bf16=bf16)
    opened = (round(config.games_per_iteration * config.opening_share)
              if config.opening_plies_max else 0)
    plain = config.games_per_iteration - opened
    offset = iteration * GAME_STRIDE
    parts = []
    if plain:
        seed = int(np.random.SeedSequence([config.seed, iteration, 3]).generate_state(1)[0])
        parts.append(collect_positions(game, labeller, plain, seed, game_offset=offset,
                                       runner=runner))
    if opened:
        draw = np.random.SeedSequence([config.seed, iteration, 4]).generate_state(2)
        plies = 1 + int(draw[0]) % config.opening_plies_max
        opener = SearchLabeller(game, guide_agent,
                                dataclasses.replace(settings, opening_plies=plies), bf16=bf16)
        parts.append(collect_positions(game, opener, opened, int(draw[1]),
                                       game_offset=offset + plain, runner=runner))
    return search_labels(Positions.concat(parts), config.value_target)


def _record(key: str, iteration: int, a: str, b: str, seed: int, rows: list[Any]) -> MatchRecord:
    by_seat = {r.seat: r for r in rows}
    first, second = by_seat["first"], by_seat["second"]
    return MatchRecord(
        key=key, round=iteration, agent_a=a, agent_b=b, seed=seed,
        games=first.games + second.games,
        a_first=(first.wins, first.draws, first.losses),
        a_second=(second.wins, second.draws, second.losses),
    )


def _record_json(r: MatchRecord) -> dict[str, Any]:
    return {
        "key": r.key, "round": r.round, "agent_a": r.agent_a, "agent_b": r.agent_b,
        "seed": r.seed, "games": r.games, "a_first": list(r.a_first),
        "a_second": list(r.a_second),
    }


def _record_from_json(d: dict[str, Any]) -> MatchRecord:
    return MatchRecord(
        key=d["key"], round=d["round"], agent_a=d["agent_a"], agent_b=d["agent_b"],
        seed=d["seed"], games=d["games"], a_first=tuple(d["a_first"]),
        a_second=tuple(d["a_second"]),
    )


def iteration_name(iteration: int) -> str:
    """The name a run's iteration goes by in its match log and Elo table."""
    return f"iter-{iteration:04d}"


def measure_student(
    game: Game,
    net: StudentNet,
    panel: list[Agent],
    config: IterateConfig,
    positions: PositionSet | None,
    iteration: int,
) -> tuple[dict[str, float], list[MatchRecord]]:
    """The raw student's strength (greedy, no search): panel scores, exact figures on
    tic-tac-toe, optimal / blunder rates on labelled positions; and its panel matches."""
    student = StudentAgent(net, greedy=True, name=iteration_name(iteration))
    seed = int(np.random.SeedSequence([config.seed, iteration, 1]).generate_state(1)[0])
    metrics: dict[str, float] = {}
    records: list[MatchRecord] = []
    if panel:
        rows = evaluate(game, student, panel, config.eval_games, seed=seed,
                        opening_plies=config.eval_opening_plies)
        for opponent in panel:
            mine = [r for r in rows if r.opponent == opponent.name]
            both = next(r for r in mine if r.seat == "both")
            metrics[f"score_vs_{opponent.name}"] = both.score
            records.append(_record(f"{iteration}:{opponent.name}", iteration,
                                   student.name, opponent.name, seed, mine))
    exact = exact_strength(game, student)
    if exact is not None:
        metrics["exhaustive_losses"] = float(exact["exhaustive_losses"])
        metrics["losses_vs_perfect"] = float(exact["losses_vs_perfect"])
        metrics["optimal_accuracy"] = float(exact["optimal_accuracy"])
    if positions is not None:
        res = evaluate_positions(student, positions, np.random.default_rng(seed))
        metrics["optimal_rate"] = float(res["optimal"]["rate"])
        metrics["blunder_rate"] = float(res["blunders"]["rate"])
    return metrics, records


def gate(
    game: Game, candidate: StudentNet, best: StudentNet, config: IterateConfig,
    iteration: int, best_iteration: int,
) -> tuple[float, MatchRecord]:
    """The candidate's score against the best student (both greedy), and the match."""
    a = StudentAgent(candidate, greedy=True, name=iteration_name(iteration))
    b = StudentAgent(best, greedy=True, name=iteration_name(best_iteration))
    seed = int(np.random.SeedSequence([config.seed, iteration, 2]).generate_state(1)[0])
    rows = evaluate(game, a, [b], config.gate_games, seed=seed,
                    opening_plies=config.gate_opening_plies)
    score = next(r.score for r in rows if r.seat == "both")
    return score, _record(f"{iteration}:gate", iteration, a.name, b.name, seed, rows)


_STOP_RULES = ("iterations", "time_limit_s")
"""Settings a resumed run may change: when to stop, not what an iteration does."""


def _settings(config: IterateConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the run it resumes (all but the
    stop rules, so a killed run can be resumed with more iterations or more time)."""
    return {k: v for k, v in config.model_dump(mode="json").items() if k not in _STOP_RULES}


def _start_student(config: IterateConfig, game: Game, run: Path,
                   runner: Runner | None) -> StudentNet:
    """A fresh student, or one distilled from the start teacher (kept in ``run/start``):
    the game's ``tlm distill`` preset for ``start = preset``."""
    if config.start == "none":
        return build_student(config.student, game, seed=config.seed)
    start_dir = run / "start"
    if not (start_dir / "student").is_dir():
        from distill.presets import config_with_preset
        from distill.run import distill

        # distill() resumes a start distillation killed half-way from its own checkpoint.
        keep = config.anchor_share > 0 or None
        if config.start == "preset":
            start = config_with_preset(game=game.name, student=config.student,
                                       seed=config.seed, out=start_dir, keep_positions=keep)
        else:
            start = config_with_preset(
                game=game.name, teacher=config.start, student=config.student,
                method=config.start_method, budget_games=config.start_games,
                games_per_round=config.start_games_per_round, seed=config.seed,
                out=start_dir, holdout_games=0, keep_positions=keep,
            )
        distill(start, runner=runner)
    return load_net(start_dir / "student", game)


def _window(parts: list[Positions], game: Game, average: bool = False) -> Positions:
    window = Positions.concat(parts) if parts else Positions.empty(game)
    return window.averaged() if average else window


def _anchor(config: IterateConfig, game: Game, run: Path) -> Positions | None:
    """The start teacher's labelled positions the fits draw from (``None`` without
    ``anchor_share``)."""
    if config.anchor_share <= 0:
        return None
    from distill.run import POSITIONS_DIR
    from distill.store import PositionStore

    directory = run / "start" / POSITIONS_DIR
    if not directory.is_dir():
        raise TlmError(f"anchor_share needs the start distillation's positions in "
                       f"{directory}, which it did not keep: start the run over (--fresh)")
    anchor = PositionStore.load(directory, game).as_positions()
    if not len(anchor):
        raise TlmError(f"the start distillation labelled no positions ({directory})")
    return anchor


def _with_anchor(window: Positions, anchor: Positions | None, config: IterateConfig,
                 iteration: int) -> tuple[Positions, int]:
    """``window`` and, drawn afresh for ``iteration``, as many of the anchor's positions
    as make them ``config.anchor_share`` of the fit; how many were drawn."""
    if anchor is None or not len(window):
        return window, 0
    share = config.anchor_share
    n = min(len(anchor), round(len(window) * share / (1.0 - share)))
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, iteration, 6]))
    drawn = np.sort(rng.choice(len(anchor), size=n, replace=False))
    return Positions.concat([window, anchor.select(drawn)]), n


def _save_replay(parts: list[Positions], directory: Path, game: Game) -> None:
    writer = DatasetWriter(directory, game, {"teacher": "expert-iteration"})
    for p in parts:
        writer.write(p)
    writer.close()


def _load_replay(directory: Path, game: Game) -> list[Positions]:
    data = load_dataset(directory, game)
    it = data.game_id // GAME_STRIDE
    return [data.select(it == k) for k in np.unique(it)]


def iterate(
    config: IterateConfig,
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
    *,
    resume: bool = True,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Run expert iteration as ``config`` says; resume a killed run with the same settings.

    ``stop`` is polled after each iteration's commit; when it returns true the run stops
    there (raising :class:`arena.runstate.RunInterrupted`), its staging directory kept
    for the same command to resume. Without ``resume``, what a killed run left is
    removed and the run starts over.

    Returns:
        The report (also written as ``report.json`` in ``config.out``).

    Raises:
        TlmError: a game without a fast engine, a bad spec, an occupied output, or an
            unfinished run in ``config.out`` made with other settings
            (:class:`arena.runstate.ResumeRefusedError`, which keeps it).
    """
    g = get_game(config.game)
    if not g.has_engine:
        raise TlmError(f"expert iteration searches, so it needs a game with a fast engine, "
                       f"not {g.name}")
    build_student(config.student, g, seed=config.seed)  # a bad spec fails before any work
    panel_specs = config.panel if config.panel is not None else DEFAULT_PANELS.get(g.name, [])
    panel = [make_agent(s, g) for s in panel_specs]
    if config.start == "preset":
        from distill.presets import preset_for

        if not preset_for(g.name).get("teacher"):
            raise TlmError(f"{g.name} has no distillation preset to start from")
    elif config.start != "none":
        make_agent(config.start, g)
    positions = load_positions(config.positions, g) if config.positions is not None else None
    settings = _settings(config)
    fit_config = FitConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        weight_decay=config.weight_decay, loss="kl", value_weight=config.value_weight,
        augment=config.augment,
    )

    with staged_directory(config.out, resume=True) as run:
        from torch.utils.tensorboard import SummaryWriter

        start_time = time.perf_counter()
        found = load_checkpoint(run) if resume else None
        if found is None:
            # The settings are fixed from the start: a start distillation killed
            # half-way resumes only with them.
            empty_directory(run)
            save_checkpoint(run, {"settings": settings, "iteration": None})
        else:
            refuse_other_settings(config.out, found[1].get("settings"), settings,
                                  defaults=settings_defaults(IterateConfig))
        state = _read_state(found)
        if state is None:
            net = _start_student(config, g, run, runner)
            optimizer = make_optimizer(net, fit_config)
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([config.seed, 0]).generate_state(1)[0]))
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
            metrics, records = measure_student(g, net, panel, config, positions, 0)
            state = IterationState(0, 0, [], [], dict(rng.bit_generator.state),
                                   torch_generator_state(generator))
            row = {"iteration": 0, "positions": 0, "accepted": 1, "gate_score": float("nan"),
                   **metrics}
            replay: list[Positions] = []
            state.matches = [_record_json(r) for r in records]
            state.curve.append(_with_elo(row, state))
            _commit(run, state, settings, net, optimizer, replay, g)
            if progress is not None:
                progress(state.curve[-1])
        else:
            assert found is not None
            checkpoint = found[0]
            net = load_net(_student_dir(run, state.iteration), g)
            optimizer = make_optimizer(net, fit_config)
            load_optimizer(optimizer, checkpoint)
            generator = torch.Generator()
            try:
                set_torch_generator_state(generator, state.torch_rng)
                rng = np.random.default_rng()
                rng.bit_generator.state = state.rng
            except (TlmError, TypeError, ValueError, KeyError) as e:
                raise TlmError(f"damaged checkpoint {checkpoint}: generators {e}") from None
            replay = (_load_replay(checkpoint / REPLAY, g)
                      if (checkpoint / REPLAY).is_dir() else [])
        _remove_uncommitted(run, state.iteration)
        best = load_net(_student_dir(run, state.best), g)
        anchor = _anchor(config, g, run)

        writer = SummaryWriter(log_dir=str(run / "tensorboard"))
        stopped = (config.stop_when_perfect and state.iteration > 0
                   and state.curve[-1].get("exhaustive_losses") == 0)
        last = state.iteration if stopped else config.iterations
        for k in range(state.iteration + 1, last + 1):
            t0 = time.perf_counter()
            data = self_play(g, best, config, k, runner)
            replay = [*replay, data][-config.replay_iterations:]
            window, anchored = _with_anchor(_window(replay, g, config.average_positions),
                                            anchor, config, k)
            t1 = time.perf_counter()
            losses = fit(net, g, window, fit_config, optimizer, generator)
            t2 = time.perf_counter()
            metrics, records = measure_student(g, net, panel, config, positions, k)
            score, gate_record = gate(g, net, best, config, k, state.best)
            accepted = score >= config.gate_threshold
            state.iteration = k
            if accepted:
                state.best = k
            state.matches += [_record_json(r) for r in (*records, gate_record)]
            state.rng = dict(rng.bit_generator.state)
            state.torch_rng = torch_generator_state(generator)
            row = {
                "iteration": k, "positions": len(window), "new_positions": len(data),
                **({"anchor_positions": anchored} if anchor is not None else {}),
                "accepted": int(accepted), "gate_score": score, "best": state.best,
                **losses, **metrics,
                "self_play_s": t1 - t0, "fit_s": t2 - t1, "measure_s": time.perf_counter() - t2,
            }
            state.curve.append(_with_elo(row, state))
            for key, value in state.curve[-1].items():
                if key != "iteration" and isinstance(value, int | float):
                    writer.add_scalar(key, value, k)
            writer.flush()
            _commit(run, state, settings, net, optimizer, replay, g)
            if accepted:
                best = load_net(_student_dir(run, k), g)
            if progress is not None:
                progress(state.curve[-1])
            if (config.time_limit_s is not None
                    and time.perf_counter() - start_time > config.time_limit_s):
                break
            if config.stop_when_perfect and row.get("exhaustive_losses") == 0:
                break
            if stop is not None and stop() and k < config.iterations:
                writer.close()
                raise RunInterrupted(f"stopped after iteration {k}; run the same command "
                                     "again to resume")
        writer.close()

        final_net = load_net(_student_dir(run, state.best), g)
        for name, which, chosen in (("student", state.best, final_net),
                                    ("latest", state.iteration, net)):
            save_student(chosen, run / name, provenance={
                "method": "expert-iteration", "start": config.start, "iteration": which,
                "seed": config.seed,
            })
        write_curve(run, state.curve, PANELS)
        report = _report(config, state, final_net, time.perf_counter() - start_time)
        write_json_atomic(run / "report.json", report)
        clear_checkpoint(run)
    return report


def _with_elo(row: dict[str, Any], state: IterationState) -> dict[str, Any]:
    ratings = elo_ratings([_record_from_json(m) for m in state.matches], anchor="random")
    me = ratings.get(iteration_name(row["iteration"]))
    return {**row, "elo": me.elo if me is not None else float("nan")}


def _read_state(found: tuple[Path, dict[str, Any]] | None) -> IterationState | None:
    """The state of the last committed iteration in a loaded checkpoint (``None``: none
    committed yet)."""
    if found is None or found[1].get("iteration") is None:
        return None
    try:
        return IterationState.from_json(found[1])
    except (KeyError, TypeError) as e:
        raise TlmError(f"damaged checkpoint {found[0]}: {e!r}") from None


def _remove_uncommitted(run: Path, iteration: int) -> None:
    """Remove the students of iterations a killed run wrote after its last commit."""
    parent = run / "iterations"
    if parent.is_dir():
        for child in parent.iterdir():
            if not (child.name.isdigit() and int(child.name) <= iteration):
                shutil.rmtree(child, ignore_errors=True)


def _commit(
    run: Path, state: IterationState, settings: dict[str, Any], net: StudentNet,
    optimizer: torch.optim.Optimizer, replay: list[Positions], game: Game,
) -> None:
    """Write iteration ``state.iteration``'s student, then the checkpoint: the commit."""
    k = state.iteration
    save_student(net, _student_dir(run, k), provenance={
        "method": "expert-iteration", "iteration": k, "seed": net.seed,
    })

    def write(directory: Path) -> None:
        save_optimizer(optimizer, directory)
        if replay:
            (directory / REPLAY).mkdir()
            _save_replay(replay, directory / REPLAY, game)

    save_checkpoint(run, {"settings": settings, **dataclasses.asdict(state)}, write)
    _remove_uncommitted(run, k)


def _report(
    config: IterateConfig, state: IterationState, net: StudentNet, wall_s: float
) -> dict[str, Any]:
    ratings = elo_ratings([_record_from_json(m) for m in state.matches], anchor="random")
    return {
        "game": config.game,
        "student": config.student,
        "student_params": param_count(net),
        "start": config.start,
        "seed": config.seed,
        "iterations": state.iteration,
        "best_iteration": state.best,
        "self_play_games": state.iteration * config.games_per_iteration,
        "wall_s": wall_s,
        "start_row": state.curve[0],
        "final": state.curve[state.best],
        "latest": state.curve[-1],
        "perfect_at_iteration": next(
            (r["iteration"] for r in state.curve if r.get("exhaustive_losses") == 0), None),
        "elo": {name: {"elo": r.elo, "ci95": [r.lo, r.hi], "games": r.games}
                for name, r in ratings.items()},
        "config": config.model_dump(mode="json"),
    }


PANELS = (
    Panel(x="iteration", xlabel="iteration", ylabel="score / rate (raw student, no search)",
          keys=("score_vs_", "optimal_accuracy", "optimal_rate", "blunder_rate", "gate_score")),
    Panel(x="iteration", xlabel="iteration", ylabel="Elo (random = 0)", keys=("elo",),
          ylim=None, twin="exhaustive_losses", twin_label="lost lines against every reply",
          legend="upper left"),
)
"""The figures of an expert-iteration run's ``curve.png``."""
