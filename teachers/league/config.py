"""A league's YAML file: its game, learners, references, rating matches and limits.

:class:`LeagueConfig` is validated (unknown keys rejected, every field checked) and
then checked against the game (:func:`check_config`: every reference is built for it,
every learner's backend is there) before anything is written. ``tlm league run``
reads one with :func:`load_config`; every key is documented on its field.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from arena.agents import make_agent
from arena.core import Agent, TlmError
from arena.games import get_game
from arena.runstate import read_yaml_mapping, validation_message
from teachers.search.settings import SearchSettings

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"


class PPOConfig(BaseModel):
    """MaskablePPO settings of an ``sb3`` learner (omitted ones: the SB3 teacher's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_steps: int | None = Field(default=None, gt=0, description="Moves per env per rollout.")
    batch_size: int | None = Field(default=None, gt=0, description="Minibatch size of each update.")
    n_epochs: int | None = Field(default=None, gt=0, description="Passes over each rollout.")
    learning_rate: float | None = Field(default=None, gt=0, description="Adam step size.")
    gamma: float | None = Field(default=None, gt=0, le=1, description="Discount factor.")
    gae_lambda: float | None = Field(default=None, ge=0, le=1, description="GAE lambda.")
    ent_coef: float | None = Field(default=None, ge=0, description="Entropy bonus weight.")
    vf_coef: float | None = Field(default=None, ge=0, description="Value loss weight.")
    clip_range: float | None = Field(default=None, gt=0, description="PPO clipping range.")
    max_grad_norm: float | None = Field(default=None, gt=0, description="Gradient norm clip.")

    def kwargs(self) -> dict[str, Any]:
        """The settings given, as MaskablePPO keyword arguments."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class LearnerConfig(BaseModel):
    """One learner of the league."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN, description="Unique name in the league.")
    backend: Literal["sb3", "rllib", "search"] = Field(
        default="sb3", description="Training backend: sb3 (MaskablePPO), rllib (RLlib PPO) "
        "or search (expert iteration: the student taught by its own search).")
    role: Literal["main", "main_exploiter", "league_exploiter"] = Field(
        default="main", description="main: trains against the league; main_exploiter: against the "
        "main learners; league_exploiter: PFSP over the whole league.")
    matchmaking: Literal["latest", "uniform", "pfsp"] = Field(
        default="pfsp",
        description="Opponents: own latest snapshot, uniform over snapshots, or PFSP.")
    weighting: Literal["hard", "variance", "linear", "uniform"] = Field(
        default="hard", description="PFSP weighting of the win rate p: (1-p)^2, p(1-p), 1-p, 1.")
    reference_share: float = Field(
        default=0.2, ge=0, le=1, description="Share of the sampling weight kept by the references.")
    opponents_per_round: int = Field(
        default=4, gt=0, description="Opponents drawn from the matchmaker for each round.")
    net_arch: list[int] = Field(
        default_factory=lambda: [64, 64], min_length=1,
        description="Hidden layer sizes of the policy and value networks.")
    n_envs: int = Field(default=8, gt=0, description="Training games played side by side.")
    ppo: PPOConfig = Field(default=PPOConfig(), description="PPO settings.")
    steps_per_round: int = Field(
        default=8192, gt=0, description="Learner moves trained per round (whole rollouts).")
    snapshot_every: int | None = Field(
        default=32768, gt=0, description="Learner moves between snapshots (null: never by steps).")
    sample_opponents: bool = Field(
        default=True, description="Learner-made opponents (live learners, snapshots) sample "
        "their policy while this learner trains, instead of playing their best move.")
    snapshot_win_rate: float | None = Field(
        default=0.7, gt=0, le=1, description="Also snapshot when the round's training score "
        "against the current opponents reaches this (null: never by score).")
    search: SearchSettings | None = Field(
        default=None, description="Settings of a search learner (backend: search; its "
        "defaults when omitted): student, simulations, fitting (teachers.search).")

    @field_validator("net_arch")
    @classmethod
    def _positive_sizes(cls, v: list[int]) -> list[int]:
        if any(w <= 0 for w in v):
            raise ValueError(f"layer sizes must be positive, got {v}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _search_settings(cls, data: Any) -> Any:
        """A search learner gets the default search settings when it gives none."""
        if isinstance(data, dict) and data.get("backend") == "search" and data.get(
                "search") is None:
            return {**data, "search": {}}
        return data

    @model_validator(mode="after")
    def _settings_of_its_backend(self) -> LearnerConfig:
        if self.backend == "search":
            ppo_keys = sorted(PPO_KEYS & self.model_fields_set)
            if ppo_keys:
                raise ValueError(f"{', '.join(ppo_keys)}: PPO settings, but a search learner "
                                 "takes its settings under search:")
        elif self.search is not None:
            raise ValueError(f"search: settings of a search learner, but the backend is "
                             f"{self.backend}")
        return self

    @model_serializer(mode="wrap")
    def _without_absent_search(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # PPO learners' configs dump as before search learners existed, so a league
        # started then is still the same league.
        data: dict[str, Any] = handler(self)
        if self.search is None:
            data.pop("search", None)
        return data


PPO_KEYS = frozenset({"net_arch", "n_envs", "ppo"})
"""The learner keys only PPO backends (sb3, rllib) read."""


class ReferenceConfig(BaseModel):
    """A fixed reference agent, always in the pool (a bare spec string also works)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN, description="Its name in the league.")
    spec: str = Field(min_length=1, description="Agent spec (random, perfect, alphabeta:4, "
                      "a student checkpoint, sb3:PATH.zip).")


class EvaluationConfig(BaseModel):
    """The rating matches played at the end of every round."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    games_per_pair: int = Field(default=40, gt=0, description="Games per match (seats alternate).")
    learners: bool = Field(default=True, description="Learners also play each other.")
    snapshots_per_learner: int = Field(
        default=2, ge=0, description="Snapshots each learner plays per round, drawn where its "
        "results are most uncertain (variance-weighted).")
    opening_plies: int = Field(
        default=0, ge=0, description="Random opening moves of every rating game, so greedy "
        "players meet different games.")


class StopConfig(BaseModel):
    """When the league stops (the first limit reached, checked between rounds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rounds: int | None = Field(default=None, gt=0, description="Rounds in all.")
    max_games: int | None = Field(
        default=None, gt=0, description="Games in all (training and rating games).")
    max_minutes: float | None = Field(
        default=None, gt=0, description="Wall minutes of loop work in all (over every resume).")


class LeagueConfig(BaseModel):
    """A self-play league: its game, learners, references, rating matches and limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    game: str = Field(description="Registered game name.")
    seed: int = Field(
        default=0, ge=0, description="The league's seed; every other seed derives from it.")
    learners: list[LearnerConfig] = Field(min_length=1, description="The learners.")
    references: list[ReferenceConfig] = Field(
        default_factory=lambda: [ReferenceConfig(name="random", spec="random")],
        description="Fixed agents, always in the pool; ratings are anchored to random.")
    evaluation: EvaluationConfig = Field(
        default=EvaluationConfig(), description="Rating matches per round.")
    stop: StopConfig = Field(default=StopConfig(), description="Stop conditions.")
    torch_threads: int = Field(default=1, gt=0, description="Torch threads while training.")

    @field_validator("references", mode="before")
    @classmethod
    def _spec_strings(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        return [{"name": _reference_name(x), "spec": x} if isinstance(x, str) else x for x in v]

    @model_validator(mode="after")
    def _unique_names(self) -> LeagueConfig:
        names = [lc.name for lc in self.learners] + [r.name for r in self.references]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"names must be unique across learners and references: {dup}")
        mains = [lc for lc in self.learners if lc.role == "main"]
        if any(lc.role == "main_exploiter" for lc in self.learners) and not mains:
            raise ValueError("a main_exploiter needs a main learner")
        return self


DEMO_LEAGUE: dict[str, Any] = {
    "game": "tictactoe",
    "learners": [{"name": "main", "net_arch": [64, 64], "steps_per_round": 8192,
                  "snapshot_every": 8192, "reference_share": 0.5}],
    "references": ["random", "heuristic", "perfect"],
    "evaluation": {"games_per_pair": 100, "snapshots_per_learner": 1},
    "stop": {"max_rounds": 3, "max_minutes": 1.0},
}
"""The short tic-tac-toe league of ``tlm demo`` (a minute at most)."""


def _reference_name(spec: str) -> str:
    return spec.replace("/", "_").replace("\\", "_")


def parse_config(data: Any, source: str = "league config") -> LeagueConfig:
    """Validate a league config from parsed YAML/JSON and check it against the game.

    Raises:
        TlmError: one line naming the first problem (unknown key, bad value, unknown
            game, a reference that does not play this game, a missing backend).
    """
    if not isinstance(data, dict):
        raise TlmError(f"{source}: expected a mapping of settings")
    try:
        config = LeagueConfig.model_validate(data)
    except ValidationError as error:
        raise TlmError(f"{source}: {validation_message(error)}") from None
    check_config(config)
    return config


def load_config(path: str | Path) -> LeagueConfig:
    """Read and validate a league YAML file (see :func:`parse_config`)."""
    return parse_config(read_yaml_mapping(path), str(path))


def check_config(config: LeagueConfig) -> dict[str, Agent]:
    """Build every reference for the game, check the learners' backends exist and
    search learners' settings fit the game.

    Returns:
        the references' agents by name.

    Raises:
        TlmError: unknown game, a reference that does not play it, a missing backend,
            search settings that do not fit the game, or an RLlib learner beside a
            learner that plays with its search.
    """
    game = get_game(config.game)
    agents: dict[str, Agent] = {}
    for ref in config.references:
        try:
            agent = make_agent(ref.spec, game)
        except TlmError as error:
            raise TlmError(f"reference {ref.name!r}: {error}") from None
        if agent.game is not None and agent.game != game.name:
            raise TlmError(f"reference {ref.name!r} plays {agent.game}, not {game.name}")
        agent.name = ref.name
        agents[ref.name] = agent
    searching = [lc.name for lc in config.learners
                 if lc.search is not None and lc.search.play_with_search_sims]
    for lc in config.learners:
        if lc.search is not None:
            try:
                lc.search.check(game)
            except TlmError as error:
                raise TlmError(f"learner {lc.name!r}: {error}") from None
        if lc.backend == "rllib" and searching:
            # RLlib's env plays other agents from observations alone, without the
            # engine state a search needs.
            raise TlmError(f"learner {lc.name!r} (rllib) cannot train against "
                           f"{searching[0]!r}, which plays with its search "
                           "(play_with_search_sims > 0); set it to 0 or use sb3")
        module = backend_module(lc.backend)
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            raise TlmError(f"learner {lc.name!r}: the {lc.backend} backend is not available "
                           f"({module} is missing)")
    return agents


def backend_module(backend: str) -> str:
    """The module of a learner backend's class (``teachers.sb3.learner``, ...)."""
    return f"teachers.{backend}.learner"
