"""Games as plugins: a user's own two-player PettingZoo AEC game works with ``tlm games``,
``tlm eval``, ``tlm league run`` and ``tlm distill`` with no change to tlm, declared as
a ``tlm.games`` entry point by an installed package or named ``package.module:factory``;
anything else is one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pettingzoo.test import api_test

from arena import TlmError, get_game, make_agent, play_matches
from scripts.cli import main

ROOT = Path(__file__).parents[1]

NIM = '''
"""Nim with one pile of seven stones: take one, two or three; who takes the last wins."""

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv

STONES = 7


class Nim(AECEnv):
    metadata = {"name": "nim_v0", "render_modes": [], "is_parallelizable": False}

    def __init__(self, render_mode=None):
        super().__init__()
        self.possible_agents = ["player_0", "player_1"]
        self.render_mode = render_mode
        self._obs_space = spaces.Dict({
            "observation": spaces.Box(0, 1, (STONES + 1,), dtype=np.int8),
            "action_mask": spaces.Box(0, 1, (3,), dtype=np.int8),
        })
        self._action_space = spaces.Discrete(3)

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._action_space

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.stones = STONES
        self.rewards = {a: 0 for a in self.agents}
        self._cumulative_rewards = {a: 0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        self.agent_selection = self.agents[0]

    def observe(self, agent):
        planes = np.zeros(STONES + 1, dtype=np.int8)
        planes[self.stones] = 1
        mask = np.array([self.stones >= k for k in (1, 2, 3)], dtype=np.int8)
        return {"observation": planes, "action_mask": mask}

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            return self._was_dead_step(action)
        other = self.agents[1 - self.agents.index(agent)]
        self.stones -= int(action) + 1
        self.rewards = {a: 0 for a in self.agents}
        if self.stones == 0:
            self.rewards[agent], self.rewards[other] = 1, -1
            self.terminations = {a: True for a in self.agents}
        self._cumulative_rewards[agent] = 0
        self.agent_selection = other
        self._accumulate_rewards()


def env(render_mode=None):
    return Nim(render_mode)


def three_players():
    e = Nim()
    e.possible_agents = ["a", "b", "c"]
    return e


NOT_A_FACTORY = 7


def broken():
    raise RuntimeError("no stones")
'''

LEAGUE = """
game: {game}
learners:
  - name: main
    net_arch: [16]
    n_envs: 2
    steps_per_round: 64
    snapshot_every: 64
    ppo: {{n_steps: 32, batch_size: 32, n_epochs: 1}}
references: [random]
evaluation: {{games_per_pair: 8, snapshots_per_learner: 1}}
stop: {{max_rounds: 2}}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the package ``tlm_nim`` is installed: the module and a
    ``*.dist-info`` whose entry_points.txt is what its setup.cfg's
    ``[options.entry_points]`` becomes."""
    root = tmp_path_factory.mktemp("site")
    (root / "tlm_nim.py").write_text(NIM)
    info = root / "tlm_nim-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tlm-nim\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tlm.games]\nnim = tlm_nim:env\n")
    return root


def tlm(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tlm ARGS`` in a fresh interpreter that has the game package installed."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from scripts.cli import main; sys.exit(main())",
         *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])},
    )


@pytest.fixture
def nim_on_path(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))


def test_the_game_itself_is_a_proper_aec_env(nim_on_path: None) -> None:
    import tlm_nim

    api_test(tlm_nim.env(), num_cycles=30)


def test_a_factory_is_a_game_with_spaces_read_off_the_env(nim_on_path: None) -> None:
    game = get_game("tlm_nim:env")
    assert game.name == "tlm_nim:env" and not game.has_engine
    assert (game.obs_shape, game.obs_dtype, game.num_actions) == ((8,), np.int8, 3)
    assert get_game("tlm_nim:env") is game
    result = play_matches(game, make_agent("random", game), make_agent("random", game), 40,
                          seed=0, record=True)
    # Every game takes all seven stones, the one who took the last one won.
    assert result.records is not None
    for seat_a, outcome, actions in zip(result.seat_a, result.outcome, result.records,
                                        strict=True):
        assert int((actions + 1).sum()) == 7
        last_mover_is_a = (len(actions) - 1) % 2 == seat_a
        assert outcome == (1 if last_mover_is_a else -1)
    again = play_matches(game, make_agent("random", game), make_agent("random", game), 40,
                         seed=0, record=True)
    assert [a.tolist() for a in again.records or []] == [a.tolist() for a in result.records]


@pytest.mark.parametrize(("name", "message"), [
    ("tlm_nowhere:env", "cannot import module 'tlm_nowhere'"),
    ("tlm_nim:missing", "module 'tlm_nim' has no 'missing'"),
    ("tlm_nim:NOT_A_FACTORY", "'NOT_A_FACTORY' is not callable"),
    ("tlm_nim:broken", "broken() failed: RuntimeError: no stones"),
    ("tlm_nim:three_players", "a two-player game is needed, this env has 3 agents"),
    ("pettingzoo.classic.rps_v2:parallel_env", "not a PettingZoo AEC env"),
    ("pettingzoo.classic.rps_v2:env", "observations must be a dict of 'observation'"),
    ("tlm_nim:", "expected package.module:factory"),
    ("checkers", "unknown game 'checkers' (known: tictactoe, "),
])
def test_what_is_not_a_two_player_aec_factory_is_one_error(
    nim_on_path: None, name: str, message: str
) -> None:
    with pytest.raises(TlmError) as error:
        get_game(name)
    assert message in str(error.value)


def test_the_cli_plays_an_installed_game_and_a_factory(site: Path) -> None:
    listed = tlm(site, "games", "--json")
    assert listed.returncode == 0, listed.stderr
    nim = [g for g in json.loads(listed.stdout) if g["game"] == "nim"]
    assert nim == [{"game": "nim", "obs_shape": [8], "obs_dtype": "int8", "actions": 3,
                    "engine": "generic", "description": "tlm_nim:env (tlm-nim)"}]
    args = ["--agent", "random", "--games", "30", "--seed", "4", "--json"]
    installed = tlm(site, "eval", "--game", "nim", *args)
    assert installed.returncode == 0, installed.stderr
    # Ray workers resolve the factory's name as the driver does.
    on_ray = tlm(site, "eval", "--game", "tlm_nim:env", *args, "--workers", "2",
                 "--shard-games", "7")
    assert on_ray.returncode == 0, on_ray.stderr
    reports = [json.loads(installed.stdout), json.loads(on_ray.stdout)]
    assert [r["game"] for r in reports] == ["nim", "tlm_nim:env"]
    assert reports[0]["results"] == reports[1]["results"]  # the same games either way
    assert sum(r["games"] for r in reports[0]["results"] if r["seat"] != "both") == 30
    bad = tlm(site, "eval", "--game", "tlm_nim:three_players", "--agent", "random")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: game 'tlm_nim:three_players': a two-player game")
    assert len(bad.stderr.splitlines()) == 1


def test_a_league_and_a_distillation_run_on_an_installed_game(
    site: Path, nim_on_path: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for game in ("nim", "tlm_nim:env"):
        config = tmp_path / f"league-{game.replace(':', '_')}.yaml"
        config.write_text(LEAGUE.format(game=game))
        league = tmp_path / f"league-{game.replace(':', '_')}"
        args = ["league", "run", "--config", str(config), "--dir", str(league), "--quiet"]
        if game == "nim":  # the installed package, in an interpreter that knows only it
            done = tlm(site, *args)
            assert done.returncode == 0, done.stderr
            out = done.stdout
        else:
            assert main(args) == 0
            out = capsys.readouterr().out
        assert "round 1: main 128 steps" in out
        assert "league stopped (max_rounds) after 2 rounds" in out
        assert main(["league", "status", "--dir", str(league), "--json"]) == 0
        assert {"main", "random"} <= {row["name"] for row in
                                      json.loads(capsys.readouterr().out)["agents"]}
    student = tmp_path / "student"
    assert main(["distill", "--game", "nim", "--teacher", "random", "--student", "mlp:16x1",
                 "--method", "offline", "--budget-games", "20", "--games-per-round", "10",
                 "--steps-per-round", "5", "--eval-games", "10", "--out", str(student)]) == 0
    report = json.loads((student / "report.json").read_text())
    assert report["teacher_games"] == 20 and "score_vs_random" in report["final"]
    capsys.readouterr()
    assert main(["eval", "--game", "nim", "--agent", str(student / "student"), "--games",
                 "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][2]["games"] == 10
