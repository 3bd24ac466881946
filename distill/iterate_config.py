"""The expert-iteration run's configuration: one frozen pydantic model, unknown keys
rejected, every ``tlm iterate`` flag a field; also loadable from YAML.

On tic-tac-toe the defaults with the gate off (:data:`TICTACTOE`) take a blank student
to perfect play in a few iterations of a few seconds each. ``tlm iterate --game G``
starts from the preset of game ``G`` (:data:`PRESETS`; a YAML config and flags override
it), which the connect-four benchmark uses too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arena import TlmError, get_game
from arena.runstate import read_yaml_mapping, validated
from distill.presets import SOLVED_POSITIONS


class IterateConfig(BaseModel):
    """Everything an expert-iteration run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    game: str = Field(description="Game name from the registry (it needs a fast engine).")
    student: str = Field("mlp:64x2", description="Student architecture spec.")
    start: str = Field(
        "none", description="`none` (a blank student), `preset` (the game's `tlm distill` "
        "preset: teacher, student and recipe) or a teacher spec distilled into the fresh "
        "student before the first iteration (alphabeta:4, perfect, ...).")
    iterations: int = Field(10, gt=0, description="Expert-iteration steps after the start.")
    out: Path = Field(description="Output directory (new or empty; a killed run resumes).")
    seed: int = Field(0, ge=0, lt=2**63, description="Seeds the student, games and training.")
    time_limit_s: float | None = Field(
        None, gt=0, description="Stop after the first iteration that ends past this many "
        "seconds of this process's run (the output is then complete with fewer iterations).")
    stop_when_perfect: bool = Field(
        False, description="Stop after the first iteration whose student loses no line "
        "against any reply (tic-tac-toe's exact measure).")

    # The search that is the teacher.
    simulations: int = Field(48, gt=0, le=100_000,
                             description="Simulations of a full search (a labelled move).")
    fast_simulations: int | None = Field(
        None, gt=0, description="Simulations of a fast search (playout-cap randomization: "
        "an unlabelled move); default: every move is a full search.")
    full_search_share: float = Field(
        1.0, gt=0, le=1, description="Probability that a move gets a full search.")
    bf16: bool | Literal["auto"] = Field(
        False, description="Run the network in bfloat16 in the self-play search: true, "
        "false, or auto (wherever the CPU computes bfloat16 natively; the search's moves "
        "agree with float32 on 99%+ of positions: scripts/bench_search.py).")
    c_puct: float = Field(1.5, ge=0, description="PUCT exploration constant.")
    dirichlet_alpha: float = Field(
        0.5, gt=0, description="Concentration of the Dirichlet noise at the search root.")
    dirichlet_fraction: float = Field(
        0.25, ge=0, le=1, description="Weight of the root noise in the root priors.")
    games_per_iteration: int = Field(128, gt=0, description="Self-play games per iteration.")
    temperature_plies: int = Field(
        9, ge=0, description="Plies played by sampling the visit counts; later plies play "
        "the most visited move.")
    opening_share: float = Field(
        0.0, ge=0, le=1, description="Share of each iteration's self-play games that open "
        "with random plies (made for nobody), so that the student also learns positions "
        "off the path of its own play.")
    opening_plies_max: int = Field(
        0, ge=0, le=40, description="The most random opening plies of those games: each "
        "iteration draws their number from 1..opening_plies_max.")
    proven_targets: bool = Field(
        False, description="Where the search proved a root move's outcome, the policy "
        "label says so: all of it on the quickest proven win, none on a proven loss "
        "(else the visit counts).")
    value_target: Literal["outcome", "search", "mix"] = Field(
        "mix", description="What the value head learns: the game's outcome, the "
        "search's root value, or their mean.")

    # Fitting the student.
    replay_iterations: int = Field(
        4, gt=0, description="The replay window: positions of this many latest iterations.")
    epochs: int = Field(2, gt=0, description="Epochs over the replay window per iteration.")
    batch_size: int = Field(128, gt=0, description="Positions per gradient step.")
    lr: float = Field(3e-3, gt=0, description="Learning rate (AdamW).")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    value_weight: float = Field(1.0, ge=0, description="Weight of the value loss.")
    augment: bool = Field(
        True, description="Also train on the symmetric images of every position.")
    average_positions: bool = Field(
        False, description="Fit on each distinct position of the replay window once, "
        "its targets the means of its copies' (the openings that many games share "
        "weigh as one position, not as many).")
    anchor_share: float = Field(
        0.0, ge=0, lt=1, description="Share of every fit's positions drawn afresh from "
        "the start teacher's labelled positions (kept by the start distillation), so the "
        "student keeps what its teacher taught while it learns from its search; 0: the "
        "search's positions only. Needs a start teacher.")

    # Measuring and gating.
    gate_threshold: float = Field(
        0.55, ge=0, le=1, description="A new student replaces the one that guides the "
        "search only if it scores at least this against it (0 always replaces).")
    gate_games: int = Field(100, gt=0, description="Games of the gating match.")
    gate_opening_plies: int = Field(
        2, ge=0, description="Random opening plies of gating games (greedy students "
        "would otherwise repeat one game per seat).")
    panel: list[str] | None = Field(
        None, description="Fixed opponents scored against every iteration (default per "
        "game: random, heuristic and perfect or alphabeta:2/4).")
    eval_games: int = Field(100, gt=0, description="Games per panel opponent per iteration.")
    eval_opening_plies: int = Field(
        2, ge=0, description="Random opening plies of panel games.")
    positions: Path | None = Field(
        None, description="Solver-labelled positions file, or the name of one shipped "
        "with tlm, for optimal / blunder rates (connect four: connect_four_solved).")

    # The start teacher's distillation (when start is a teacher): the game's
    # ``tlm distill`` preset (distill.presets) with these settings on top.
    start_method: Literal["dagger", "offline"] = Field(
        "dagger", description="How the start teacher is distilled into the fresh student.")
    start_games: int = Field(200, gt=0, description="Start teacher's labelled games.")
    start_games_per_round: int = Field(50, gt=0, description="Start: games per round.")

    @model_validator(mode="after")
    def _anchor_needs_a_teacher(self) -> IterateConfig:
        if self.anchor_share > 0 and self.start == "none":
            raise ValueError("anchor_share needs a start teacher (start: preset or a "
                             "teacher spec), whose labelled positions it draws from")
        return self


DEFAULT_PANELS: dict[str, list[str]] = {
    "tictactoe": ["random", "heuristic", "perfect"],
    "connect_four": ["random", "heuristic", "alphabeta:2", "alphabeta:4"],
}
"""Panel opponents when none is given."""

CONNECT_FOUR: dict[str, Any] = {
    "game": "connect_four",
    "student": "res:64x3",
    "start": "preset",
    "iterations": 120,
    "time_limit_s": 3 * 3600.0,
    "simulations": 200,
    "fast_simulations": 50,
    "full_search_share": 0.5,
    "bf16": "auto",
    "c_puct": 1.5,
    "dirichlet_alpha": 1.0,
    "dirichlet_fraction": 0.25,
    "games_per_iteration": 256,
    "temperature_plies": 10,
    "opening_share": 0.5,
    "opening_plies_max": 16,
    "proven_targets": True,
    "value_target": "mix",
    "anchor_share": 0.3,
    "average_positions": True,
    "replay_iterations": 4,
    "epochs": 1,
    "batch_size": 256,
    "lr": 5e-4,
    "value_weight": 1.0,
    "gate_threshold": 0.55,
    "gate_games": 200,
    "gate_opening_plies": 4,
    "eval_games": 100,
    "eval_opening_plies": 4,
    "positions": SOLVED_POSITIONS,
}
"""Connect-four settings of ``tlm iterate`` and ``scripts/bench_iterate.py``: the game's
distillation preset (``res:64x3`` taught by ``alphabeta:8``) as the start, then its own
search (200 simulations on half the moves, 50 on the others) plays 256 games an
iteration, half of them from 1-16 random opening plies (without them the raw student
drifts to its own play's positions: from 0.818 to 0.743 optimal moves on the solved
positions, reached by random play, in 7 iterations), a window of 4 iterations, a small
learning rate to refine the distilled student, and 30% of every fit drawn from the
positions `alphabeta:8` labelled in the start distillation (without them the raw
student still drifted, from 0.848 to 0.743 optimal moves in 20 iterations; with them
it ended at 0.840, its search stronger too: docs/guides/expert-iteration.md), each
distinct position of the window fitted once with its copies' mean targets (over seeds
0 and 1, the worst raw student rose from 0.521 to 0.580 against alphabeta:4 and from
0.825 to 0.845 optimal moves, the search's figures level), the policy labels what the
search proved where it proved it (the quickest proven win, no proven loss: over seeds 0
and 1 the raw student rose to 0.873 optimal moves on both, the end search to 0.711 and
0.723 against the start's search, the other figures within their noise); 120
iterations (against 40 on seeds 0 and 1: the worse end search 0.745 against the start's
search, 0.711 against alphabeta:10, the raw student 0.614 against alphabeta:4, up from
0.711, 0.669 and 0.574; optimal moves 0.858, not 0.873, within the noise; about an hour
from nothing on two cores), and a stop after 3 hours of run time."""

TICTACTOE: dict[str, Any] = {
    "game": "tictactoe",
    "gate_threshold": 0.0,
    "stop_when_perfect": True,
}
"""Tic-tac-toe settings of ``tlm iterate``: the defaults, but the newest student always
guides the search, and the run stops at its first perfect student. Good tic-tac-toe
players draw each other, so a student better than the guide scores about 0.5 against it,
and a gate asking for 0.55 kept a guide with a dozen lost lines for up to eight
iterations, until the search it guided had taught past it; and a perfect student trained
on for more iterations can lose a line again (2 lost lines at iteration 16 after perfect
play at iteration 5, one seed of twenty). ``scripts/bench_recipes.py`` measures the
README's command on many seeds."""

PRESETS: dict[str, dict[str, Any]] = {"tictactoe": TICTACTOE, "connect_four": CONNECT_FOUR}
"""The preset ``tlm iterate`` starts from, by game."""


def make_iterate_config(**fields: Any) -> IterateConfig:
    """A validated config from fields (``None`` values fall back to defaults).

    Raises:
        TlmError: a missing, unknown or out-of-range field, as one line.
    """
    return validated(IterateConfig, {k: v for k, v in fields.items() if v is not None},
                     "iterate")


def iterate_config_with_preset(config_file: Path | None = None, **flags: Any) -> IterateConfig:
    """The run's settings: the game's preset, then the YAML file, then the flags
    (``None`` flags are unset).

    Raises:
        TlmError: no game, an unknown game, or a bad config.
    """
    data = read_yaml_mapping(config_file) if config_file is not None else {}
    game = flags.get("game") or data.get("game")
    if game is None:
        raise TlmError("no game given (--game or `game:` in the config file)")
    base = PRESETS.get(get_game(str(game)).name, {})
    given = {**data, **{k: v for k, v in flags.items() if v is not None}}
    fields = {**base, **given}
    if fields.get("start", "none") == "none" and "anchor_share" not in given:
        fields.pop("anchor_share", None)  # the preset's anchor needs its start teacher
    return make_iterate_config(**fields)


def load_iterate_config(path: str | Path, **overrides: Any) -> IterateConfig:
    """A config from a YAML file, with ``overrides`` on top (no preset).

    Raises:
        TlmError: the file is missing or not a YAML mapping, or the config is bad.
    """
    data = read_yaml_mapping(path)
    return make_iterate_config(**{**data, **{k: v for k, v in overrides.items() if v is not None}})
