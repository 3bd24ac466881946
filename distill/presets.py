"""Tested settings for the runs tlm ships: ``tlm distill --game G --teacher T`` starts
from the preset of game ``G`` (a YAML config and flags override it), and the demo, the
tests and the benchmarks use the same settings, so a figure in the README comes from
what a user gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arena import TlmError, get_game
from arena.runstate import read_yaml_mapping
from distill.config import DistillConfig, load_config, make_config

SOLVED_POSITIONS = "connect_four_solved"
"""400 solver-labelled connect-four positions, shipped with tlm
(:func:`arena.positions.positions_path`): measured every round, never trained on."""

TICTACTOE_DAGGER: dict[str, Any] = {
    "game": "tictactoe",
    "teacher": "perfect",
    "student": "mlp:128x2",
    "method": "dagger",
    "budget_games": 2000,
    "games_per_round": 50,
    "mix": {"student": 0.5, "random": 0.5},
    "opening_plies_max": 6,
    "epsilon": 0.3,
    "steps_per_round": 150,
    "eval_games": 200,
    "eval_opponents": ["random", "heuristic"],
    "holdout_games": 50,
    "stop_when_perfect": True,
}
"""DAgger from the perfect player into a fresh 128x2 MLP: each round's 50 games are half
the student against itself and half the student against a uniformly random player, each
opening with 0-6 random plies, with 30% of either side's moves random; the teacher labels
every position reached, and each position is learned in one of its 8 symmetric images.
The run stops at the first round whose student loses no line against any reply.

Perfect play is judged on every position the student's own moves can lead to against
every reply (hundreds, and they shift whenever the student's choice among equally good
moves flips). With self-play alone those positions were labelled slowly: the student's
lost lines lay almost all in positions never labelled, whose answers a network only
guesses, so reaching a perfect round was luck and some seeds did not within 500 games.
The random opponent plays every reply and the random openings reach the rest, so the
labels cover nearly all those positions within about 1,500 games, after which the
student stays perfect round after round; the first perfect round usually comes within
a few hundred games (``scripts/bench_recipes.py`` measures seeds 0-49)."""

CONNECT_FOUR_DAGGER: dict[str, Any] = {
    "game": "connect_four",
    "teacher": "alphabeta:8,t=1,solve=16",
    "student": "res:64x3",
    "method": "dagger",
    "budget_games": 12000,
    "games_per_round": 1000,
    "beta0": 0.0,
    "mix": {"student": 0.5, "heuristic": 0.1, "random": 0.1, "alphabeta:2": 0.15,
            "teacher": 0.15},
    "opening_plies": 0,
    "opening_plies_max": 8,
    "epsilon": 0.05,
    "steps_per_round": 300,
    "batch_size": 256,
    "lr": 2e-3,
    "eval_games": 100,
    "eval_opponents": [],
    "panel": True,
    "holdout_games": 0,
    "positions": SOLVED_POSITIONS,
}
"""DAgger from an 8-ply alpha-beta (soft labels at temperature 1, exact in the last 16
empty cells) into a fresh small residual network (3 blocks of 64 channels): the games
mix the student against itself with ``random``, ``heuristic``, ``alphabeta:2`` and the
teacher playing against it, each opening with 0-8 random plies, so the labelled
positions cover the game rather than a few lines; measured every round on the solved
positions and the standard panel."""

PRESETS: dict[str, dict[str, Any]] = {
    "tictactoe": TICTACTOE_DAGGER,
    "connect_four": CONNECT_FOUR_DAGGER,
}
"""The preset ``tlm distill`` starts from, by game."""

ADAPTIVE: dict[str, Any] = {
    "method": "adaptive",
    "student": "mlp:128x2",
    "budget_games": 500,
    "games_per_round": 25,
    "steps_per_round": 150,
    "beta0": 0.0,
    "label_budget": 20_000,
    "eval_opponents": [],
    "holdout_games": 0,
    "stop_when_perfect": True,
}
"""The adaptive teacher (``--method adaptive``) on any game: a fresh 128x2 MLP, 25
games a round and 150 gradient steps, at most 500 games or 20,000 labels; no teacher
moves in the student's games (beta 0); measured by its probe alone (no opponents, no
held-out games); on tic-tac-toe it stops at perfect play. It names no teacher."""

INCONTEXT: dict[str, Any] = {
    "method": "incontext",
    "teacher": "best-response",
    "student": "gru:128",
    "series": 10,
    "budget_games": 230_400,
    "games_per_round": 5760,
    "steps_per_round": 200,
    "lr": 1e-3,
    "epsilon": 0.1,
    "eval_games": 1000,
    "eval_opponents": [],
    "holdout_games": 0,
}
"""In-context distillation (``--method incontext``, tic-tac-toe): a fresh ``gru:128``
plays series of 10 games against each of the 36 training members of the
``tictactoe-styles`` population (:mod:`distill.population`), 16 series each a round
(5,760 games), with 10% random moves; the cautious best response labels every decision,
those before the opponent's first error weighing 3; 200 steps of Adam a round on
batches of 64 whole series from the 8,192 latest; 40 rounds (230,400 games); measured
on the 12 held-out one-side players (100 series each a round, 1,000 at the end) beside
a feedforward control and the same student with its memory reset."""

INCONTEXT_CONNECT_FOUR: dict[str, Any] = {
    **INCONTEXT,
    "budget_games": 30 * 3520,
    "games_per_round": 3520,
    "steps_per_round": 100,
    "eval_games": 500,
}
"""In-context distillation on connect four: the same fresh ``gru:128`` plays series of
10 games against each of the 22 training members of ``connect-four-styles``, 16 series
each a round (3,520 games), labelled by the search's best response to each
(:mod:`teachers.search_response`); 100 steps of Adam a round; 30 rounds (105,600
games); measured on the six held-out centre and inner players (50 series each a round,
1,000 at the end)."""

INCONTEXT_RL: dict[str, Any] = {
    "method": "incontext-rl",
    "teacher": "reward",
    "student": "gru:128",
    "series": 10,
    "budget_games": 576_000,
    "games_per_round": 5760,
    "lr": 5e-4,
    "eval_games": 1000,
    "eval_opponents": [],
    "holdout_games": 0,
}
"""The reinforcement arm of in-context learning (``--method incontext-rl``, tic-tac-toe):
the same fresh ``gru:128`` and population as :data:`INCONTEXT`, trained by recurrent PPO
from the series' results alone (no teacher: ``reward``): 100 iterations of 16 series
of 10 games against each training member (576,000 games), Adam at 5e-4, measured the
same way."""

INCONTEXT_RL_CONNECT_FOUR: dict[str, Any] = {
    **INCONTEXT_RL,
    "budget_games": INCONTEXT_CONNECT_FOUR["budget_games"],
    "games_per_round": INCONTEXT_CONNECT_FOUR["games_per_round"],
    "eval_games": INCONTEXT_CONNECT_FOUR["eval_games"],
}
"""The reinforcement arm on connect four: the games of :data:`INCONTEXT_CONNECT_FOUR`
(30 iterations of 16 series against each of the 22 training members, 105,600 games),
from the series' results alone."""

LEARNED: dict[str, Any] = {
    **ADAPTIVE,
    "method": "learned",
    "budget_games": 750,
    "label_budget": 5000,
}
"""The learned teacher (``--method learned``) on tic-tac-toe, with the settings its
shipped teaching policy was trained under (the ``labels`` and ``round`` features are
shares of the run's budgets): the adaptive preset's student and rounds, at most 30
rounds (750 games) or 5,000 labels."""

LEARNED_CONNECT_FOUR: dict[str, Any] = {
    **LEARNED,
    "student": "res:32x4",
    "games_per_round": 100,
    "steps_per_round": 300,
    "budget_games": 60 * 100,
    "label_budget": 200_000,
    "stop_when_perfect": False,
    "target": 0.80,
    "positions": SOLVED_POSITIONS,
}
"""The learned teacher on connect four: a fresh ``res:32x4`` until its optimal-move rate
on the solved positions reaches 0.80, 100 games and 300 steps a round, at most 60
rounds or 200,000 labels (``scripts/bench_teaching.py``'s connect-four settings)."""

METHOD_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "adaptive": {
        "": ADAPTIVE,
        "connect_four": {**ADAPTIVE, "positions": SOLVED_POSITIONS},
    },
    "learned": {"": LEARNED, "connect_four": LEARNED_CONNECT_FOUR},
    "incontext": {"": INCONTEXT, "connect_four": INCONTEXT_CONNECT_FOUR},
    "incontext-rl": {"": INCONTEXT_RL, "connect_four": INCONTEXT_RL_CONNECT_FOUR},
}
"""The preset of a method with settings of its own, by game (``""``: any other game)."""


def preset_for(game: str, method: str | None = None) -> dict[str, Any]:
    """The preset of ``game`` (empty for a game without one), or of ``method`` on it.

    A method other than the game preset's takes the game and its teacher from the game
    preset, and the method's own preset (:data:`METHOD_PRESETS`, which names no
    teacher) if it has one.
    """
    name = get_game(game).name
    base = dict(PRESETS.get(name, {}))
    if method is None or not base and method not in METHOD_PRESETS:
        return base
    if method in METHOD_PRESETS:
        by_game = METHOD_PRESETS[method]
        return {"game": name, **by_game.get(name, by_game[""])}
    if method != base["method"]:
        return {k: base[k] for k in ("game", "teacher")}
    return base


def config_with_preset(config_file: Path | None = None, **flags: Any) -> DistillConfig:
    """The run's settings: the game's preset, then the YAML file, then the flags
    (``None`` flags are unset)."""
    data = read_yaml_mapping(config_file) if config_file is not None else {}
    flags = {k: v for k, v in flags.items() if v is not None}
    game = flags.get("game") or data.get("game")
    if game is None:
        raise TlmError("no game given (--game or `game:` in the config file)")
    base = preset_for(str(game), flags.get("method") or data.get("method"))
    if not (flags.get("teacher") or data.get("teacher") or base.get("teacher")):
        raise TlmError("no teacher given (--teacher or `teacher:` in the config file)")
    if config_file is not None:
        return load_config(config_file, **{**base, **data, **flags})
    return make_config(**{**base, **flags})


def default_help(field: str) -> str:
    """The default of a config field as help text: the built-in one and each preset's."""
    info = DistillConfig.model_fields[field]
    default: Any = None
    parts = []
    if info.default_factory is not None:
        default = info.default_factory()  # type: ignore[call-arg]
        parts.append(f"default {_show(default)}")
    elif not info.is_required():
        default = info.default
        parts.append(f"default {_show(default)}")
    for game, preset in PRESETS.items():
        if field in preset and preset[field] != default:
            parts.append(f"{game}: {_show(preset[field])}")
    for method, by_game in METHOD_PRESETS.items():
        if field != "method" and field in by_game[""] and by_game[""][field] != default:
            parts.append(f"{method}: {_show(by_game[''][field])}")
    return "; ".join(parts) if parts else ""


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={v:g}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return str(value)
