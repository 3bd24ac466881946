"""The search learner (``backend: search``): the learner protocol, training that changes
the student, save -> restore -> train equal to a run never stopped, the same seed giving
the same learner, snapshots that load as agents, and a short league of a search learner
that writes ratings; bad search settings exit 2 with one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from arena import Agent, get_game, make_agent, play_matches
from scripts.cli import main
from students import StudentAgent
from teachers.league import LeagueStore
from teachers.learner import Learner
from teachers.mcts.labeller import SearchLabeller, SelfPlaySettings
from teachers.mcts.puct_agent import PUCTAgent
from teachers.search import SearchLearner, SearchSettings, self_play_settings
from teachers.search.games import play_training_games
from teachers.selfplay import sampling

GAME = get_game("tictactoe")
SMALL = SearchSettings(student="mlp:16x1", simulations=4, temperature_plies=4,
                       replay_size=300, batch_size=32, epochs=2)
"""A learner small enough that a round of ~60 moves takes a fraction of a second."""


def random_agent() -> Agent:
    agent = make_agent("random", GAME)
    agent.name = "random"
    return agent


def opponents(learner: SearchLearner) -> list[Agent]:
    """What a league hands a learner before its first snapshot: a reference and itself
    (its live agent, sampling)."""
    return [random_agent(), sampling(learner.agent())]


def weights(learner: SearchLearner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.net.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_protocol_and_training_changes_the_student() -> None:
    learner = SearchLearner("main", GAME, seed=3, settings=SMALL)
    assert isinstance(learner, Learner) and learner.backend == "search"
    before = weights(learner)
    report = learner.train(60, opponents(learner), [0.5, 0.5])
    assert report.steps >= 60 and report.total_steps == report.steps == learner.total_steps
    assert report.games == learner.games > 0
    assert set(report.win_rate) == {"random", "main"}
    assert all(0.0 <= p <= 1.0 for p in report.win_rate.values())
    assert np.isfinite(report.extra["policy_loss"]) and np.isfinite(report.extra["value_loss"])
    assert report.extra["replay"] == report.extra["labelled"] == report.steps
    assert not same(before, weights(learner))
    # The live agent plays the weights as they are now.
    obs, mask = np.zeros((1, *GAME.obs_shape), GAME.obs_dtype), np.ones((1, 9), np.int8)
    agent = learner.agent()
    assert agent.name == "main"
    first = agent.policy(obs, mask)  # type: ignore[attr-defined]
    second_report = learner.train(60, [random_agent()])
    assert set(second_report.win_rate) == {"random"}
    assert second_report.total_steps == report.steps + second_report.steps
    assert not np.allclose(first, agent.policy(obs, mask))  # type: ignore[attr-defined]
    # The window keeps the latest positions only.
    for _ in range(4):
        learner.train(60, [random_agent()])
    assert len(learner.replay) == SMALL.replay_size


def test_training_games_record_the_learners_moves_only() -> None:
    learner = SearchLearner("main", GAME, seed=1, settings=SMALL)
    labeller = SearchLabeller(GAME, StudentAgent(learner.net), self_play_settings(SMALL))
    rng = np.random.default_rng(0)
    played = play_training_games(GAME, labeller, "main", [random_agent()], np.ones(1), 40, rng,
                                 moves_per_game=4.0, first_game_id=100)
    data = played.positions
    assert played.moves == len(data) >= 40 and played.counted["random"] == played.games
    assert set(np.unique(data.game_id)) == set(range(100, 100 + played.games))
    # Game i of a match has the labeller in seat i % 2: only its moves are there.
    assert (data.seat == (data.game_id - 100) % 2).all()
    assert np.allclose(data.probs.sum(axis=1), 1.0)
    # Against itself both sides' moves are the learner's.
    selfplay = play_training_games(GAME, labeller, "main", [sampling(learner.agent())],
                                   np.ones(1), 40, rng, moves_per_game=8.0)
    assert set(np.unique(selfplay.positions.seat)) == {0, 1}


def test_proven_targets_label_the_quickest_proven_win() -> None:
    """X (0, 1) against O (3, 4), X to move: 2 wins at once, and the search proves it."""
    engine = GAME.make_engine()
    state = engine.reset(1)
    for move in (0, 3, 1, 4):
        state, _, _ = engine.step(state, np.array([move]))
    obs, mask = engine.observe(state)
    guide = StudentAgent(SearchLearner("main", GAME, seed=1, settings=SMALL).net)
    labels = {}
    for proven in (False, True):
        settings = SelfPlaySettings(sims=40, dirichlet_alpha=None, proven_targets=proven)
        labeller = SearchLabeller(GAME, guide, settings)
        labeller.act(obs, mask, np.random.default_rng(0), state)
        assert labeller.labels is not None
        labels[proven] = labeller.labels[0][0]
    assert labels[True].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert 0 < labels[False][2] < 1  # the visits spread beyond the win
    # A league's search learner labels so with `proven_targets: true`.
    assert self_play_settings(SMALL.model_copy(update={"proven_targets": True})).proven_targets


def test_save_restore_then_train_equals_a_run_never_stopped(tmp_path: Path) -> None:
    whole = SearchLearner("main", GAME, seed=7, settings=SMALL)
    whole.train(60, opponents(whole), [0.3, 0.7])
    whole.save(tmp_path / "state")
    expected = whole.train(60, opponents(whole), [0.3, 0.7])

    resumed = SearchLearner("main", GAME, seed=99, settings=SMALL)  # restore replaces all
    resumed.restore(tmp_path / "state")
    report = resumed.train(60, opponents(resumed), [0.3, 0.7])
    assert same(weights(whole), weights(resumed))
    assert (report.steps, report.games, report.total_steps, report.win_rate) == (
        expected.steps, expected.games, expected.total_steps, expected.win_rate)
    assert report.extra["policy_loss"] == expected.extra["policy_loss"]
    assert np.array_equal(whole.replay.positions.obs, resumed.replay.positions.obs)
    state = sorted(p.name for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert "model.safetensors" in state and "optimizer.safetensors" in state
    assert any(name.endswith(".parquet") for name in state)
    assert not any(name.endswith((".pt", ".pkl", ".pickle")) for name in state)


def test_same_seed_same_learner() -> None:
    runs = []
    for seed in (4, 4, 5):
        learner = SearchLearner("main", GAME, seed=seed, settings=SMALL)
        reports = [learner.train(50, opponents(learner)) for _ in range(2)]
        runs.append((weights(learner), [r.win_rate for r in reports]))
    assert same(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not same(runs[0][0], runs[2][0])


@pytest.mark.parametrize("sims", [0, 3])
def test_snapshot_spec_loads_and_plays(sims: int, tmp_path: Path) -> None:
    settings = SMALL.model_copy(update={"play_with_search_sims": sims})
    learner = SearchLearner("main", GAME, seed=2, settings=settings)
    learner.train(40, opponents(learner))
    spec = learner.snapshot(tmp_path / "snap")
    assert (tmp_path / "snap" / "student" / "model.safetensors").is_file()
    with pytest.raises(FileExistsError):
        learner.snapshot(tmp_path / "snap")
    agent = make_agent(spec, GAME)
    if sims:
        assert spec.startswith("puct:") and f"sims={sims}" in spec
        assert isinstance(agent, PUCTAgent) and isinstance(learner.agent(), PUCTAgent)
    else:
        assert spec == str(tmp_path / "snap" / "student")
    result = play_matches(GAME, agent, random_agent(), 10, seed=0)
    assert len(result.outcome) == 10
    # The frozen snapshot plays as the live learner did when it was taken.
    live = play_matches(GAME, learner.agent(), random_agent(), 10, seed=0)
    assert np.array_equal(result.outcome, live.outcome)


def test_a_search_learner_learns_tictactoe() -> None:
    """Ten rounds against random and itself take the raw student from about 0.5 to
    0.9 against random (seeds 0-5: 0.91-0.96 after, in 4-6 s each)."""
    from arena import evaluate

    settings = SearchSettings(student="mlp:32x1", simulations=16, temperature_plies=4,
                              replay_size=3000, batch_size=64, epochs=2, lr=3e-3)
    learner = SearchLearner("main", GAME, seed=0, settings=settings)
    before = evaluate(GAME, learner.agent(), [random_agent()], 200, seed=1)[2].score
    for _ in range(10):
        learner.train(256, opponents(learner))
    after = evaluate(GAME, learner.agent(), [random_agent()], 200, seed=1)[2].score
    assert after >= 0.85 and after > before + 0.2, (before, after)


# -- in a league -------------------------------------------------------------------------


LEAGUE: dict[str, Any] = {
    "game": "tictactoe",
    "seed": 3,
    "learners": [{
        "name": "expert",
        "backend": "search",
        "steps_per_round": 64,
        "snapshot_every": 128,
        "search": {"student": "mlp:16x1", "simulations": 4, "temperature_plies": 4,
                   "replay_size": 400, "batch_size": 32},
    }],
    "references": ["random"],
    "evaluation": {"games_per_pair": 20, "snapshots_per_learner": 1, "opening_plies": 1},
    "stop": {"max_rounds": 3},
}


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_league_of_a_search_learner_runs_rates_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "league"
    # Two rounds, then resumed in a second run for the third.
    for rounds in (2, 3):
        path = write_config(tmp_path / f"r{rounds}.yaml",
                            {**LEAGUE, "stop": {"max_rounds": rounds}})
        code = main(["league", "run", "--config", str(path), "--dir", str(directory), "--quiet"])
        assert code == 0, capsys.readouterr().err
    whole = tmp_path / "whole"
    assert main(["league", "run", "--config", str(write_config(tmp_path / "w.yaml", LEAGUE)),
                 "--dir", str(whole), "--quiet"]) == 0
    with LeagueStore.open(directory, readonly=True) as store:
        assert store.get_state("round") == 3
        ratings = store.get_state("ratings")
        agents = {a.name: a for a in store.agents()}
        state = store.get_state("learner/expert")
        log = [(m.key, m.a_first, m.a_second) for m in store.matches()]
    with LeagueStore.open(whole, readonly=True) as store:
        assert [(m.key, m.a_first, m.a_second) for m in store.matches()] == log
    assert {"expert", "random", "expert-r0001"} <= set(ratings)
    assert agents["expert"].info["backend"] == "search"
    assert state["total_steps"] >= 3 * 64
    assert sum(1 for key, _, _ in log if "/expert/random" in key) == 3
    # The resumed learner's student is the one of the league never stopped.
    student = Path("learners/expert/r000003/state/student/model.safetensors")
    assert (directory / student).read_bytes() == (whole / student).read_bytes()
    snapshot = make_agent(f"league:{directory}/expert-r0001", GAME)
    assert len(play_matches(GAME, snapshot, random_agent(), 4, seed=0).outcome) == 4


def test_a_league_search_learner_playing_with_its_search(tmp_path: Path) -> None:
    """Snapshots of a learner that plays with its search are ``puct:PATH,sims=N`` specs
    stored relative to the league, and load from anywhere."""
    from teachers.league import parse_config, run_league

    learner = {**LEAGUE["learners"][0], "snapshot_every": 64,
               "search": {**LEAGUE["learners"][0]["search"], "play_with_search_sims": 2}}
    config = {**LEAGUE, "learners": [learner], "stop": {"max_rounds": 2},
              "evaluation": {"games_per_pair": 10, "snapshots_per_learner": 1}}
    run_league(parse_config(config), tmp_path / "league")
    with LeagueStore.open(tmp_path / "league", readonly=True) as store:
        spec = store.agent("expert-r0001").spec
        assert spec.startswith("puct:snapshots/expert-r0001/") and ",sims=2" in spec
        assert store.get_state("round") == 2
    agent = make_agent(f"league:{tmp_path / 'league'}/expert-r0001", GAME)
    assert isinstance(agent, PUCTAgent)


def test_the_connect_four_search_config_loads() -> None:
    from teachers.league import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs"
                         / "league_connect_four_search.yaml")
    (learner,) = config.learners
    assert learner.backend == "search" and learner.search is not None
    assert learner.search.play_with_search_sims > 0
    assert [r.name for r in config.references] == ["random", "heuristic", "alphabeta:2",
                                                   "alphabeta:4"]


def _with_learner(**change: Any) -> dict[str, Any]:
    return {**LEAGUE, "learners": [{**LEAGUE["learners"][0], **change}]}


def _with_search(**change: Any) -> dict[str, Any]:
    return _with_learner(search={**LEAGUE["learners"][0]["search"], **change})


BAD = {
    "unknown search key": (_with_search(sims=8), "learners.0.search.sims: unknown key"),
    "no simulations": (_with_search(simulations=0), "learners.0.search.simulations"),
    "bad value target": (_with_search(value_target="win"), "learners.0.search.value_target"),
    "bad student": (_with_search(student="mlp:0x2"), "learners.0.search.student"),
    "fast above full": (_with_search(fast_simulations=9), "fast_simulations"),
    "ppo key": (_with_learner(net_arch=[8]), "net_arch: PPO settings"),
    "search on sb3": (_with_learner(backend="sb3"), "backend is sb3"),
    "game without search": ({**LEAGUE, "game": "leduc_holdem"}, "search backend plays"),
    "rllib beside a searching learner": (
        {**LEAGUE, "learners": [{**LEAGUE["learners"][0], "search": {"play_with_search_sims": 2}},
                                {"name": "rl", "backend": "rllib"}]},
        "cannot train against 'expert'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_search_settings_exit_2_with_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, expected = BAD[case]
    path = write_config(tmp_path / "league.yaml", config)
    code = main(["league", "run", "--config", str(path), "--dir", str(tmp_path / "l"),
                 "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "l").exists()
