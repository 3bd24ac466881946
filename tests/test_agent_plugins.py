"""Agent spec kinds found through entry points: every spec works in a fresh interpreter
that imported only ``arena``, importing ``arena`` pulls in no upper layer, and an
installed third-party package adds a kind the way the README shows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from sb3_contrib import MaskablePPO

from students import build_student, save_student
from teachers.sb3 import make_vec_env

ROOT = Path(__file__).parents[1]
UPPER = "('teachers', 'students', 'distill', 'scripts')"


def fresh_python(code: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = [str(ROOT)] + ([str(extra_path)] if extra_path is not None else [])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
    )


def test_the_issue_one_liner_works_in_a_fresh_interpreter() -> None:
    done = fresh_python("import arena; arena.make_agent('mcts:50', 'connect_four')")
    assert done.returncode == 0, done.stderr


def test_arena_imports_no_upper_layer_and_loads_mcts_on_demand() -> None:
    done = fresh_python(f"""
        import sys
        import arena
        loaded = lambda: sorted({{m.split('.')[0] for m in sys.modules}} & set({UPPER}))
        assert loaded() == [], loaded()
        agent = arena.make_agent('mcts:50', 'connect_four')
        print(type(agent).__module__, agent.name)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["teachers.mcts.agent", "mcts:50"]


def test_sb3_and_student_specs_without_importing_teachers_or_students(tmp_path: Path) -> None:
    model = MaskablePPO("MlpPolicy", make_vec_env("tictactoe", 1),
                        n_steps=16, batch_size=16, seed=0, device="cpu")
    model.save(tmp_path / "ppo.zip")
    save_student(build_student("mlp:16x1", "tictactoe", seed=0), tmp_path / "student")
    done = fresh_python(f"""
        import numpy as np
        import arena
        game = arena.get_game("tictactoe")
        obs, mask = game.make_engine().observe(game.make_engine().reset(3, seed=0))
        for spec in ("sb3:{tmp_path / 'ppo.zip'}", "{tmp_path / 'student'}"):
            agent = arena.make_agent(spec, "tictactoe")
            actions = agent.act(obs, mask, np.random.default_rng(0))
            assert mask[np.arange(3), actions].all()
            print(type(agent).__name__)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SB3Agent", "StudentAgent"]


def test_league_members_load_through_the_entry_point(tmp_path: Path) -> None:
    """``league:DIR/NAME`` lives with the league in ``teachers``; ``arena`` reaches it
    only through ``tlm.agents``, on first use."""
    from teachers.league import LeagueStore

    with LeagueStore.create(tmp_path / "lg", "tictactoe", {"game": "tictactoe"}) as store:
        store.add_agent("rand", "reference", "random")
    done = fresh_python(f"""
        import sys
        import arena
        assert "teachers" not in sys.modules
        agent = arena.make_agent("league:{tmp_path / 'lg'}/rand", "tictactoe")
        print(type(agent).__name__, "teachers.league.agents" in sys.modules)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["RandomAgent", "True"]


def test_unknown_spec_lists_the_entry_point_kinds_in_a_fresh_interpreter() -> None:
    done = fresh_python("""
        import arena
        try:
            arena.make_agent("wizard", "tictactoe")
        except arena.TlmError as e:
            print(e)
    """)
    assert done.returncode == 0, done.stderr
    assert "unknown agent spec 'wizard'" in done.stdout
    assert "mcts:N" in done.stdout and "sb3:PATH.zip" in done.stdout
    assert "zoo:GAME" in done.stdout


def test_a_third_party_package_adds_a_kind(tmp_path: Path) -> None:
    # An installed distribution is a package plus a *.dist-info directory on sys.path;
    # its entry_points.txt is what setup.cfg's [options.entry_points] becomes.
    (tmp_path / "tlm_first_legal").mkdir()
    (tmp_path / "tlm_first_legal" / "__init__.py").write_text(textwrap.dedent("""
        import numpy as np
        import arena

        class FirstLegal(arena.Agent):
            def act(self, obs, mask, rng, state=None):
                return np.asarray(mask).argmax(axis=1)

        def register():
            arena.register_agent("first", lambda arg, game: FirstLegal(), "first")
    """))
    info = tmp_path / "tlm_first_legal-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tlm-first-legal\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tlm.agents]\nfirst = tlm_first_legal:register\n")
    done = fresh_python("""
        import arena
        result = arena.play_matches("tictactoe", arena.make_agent("first", "tictactoe"),
                                    arena.make_agent("random", "tictactoe"), 10, seed=0)
        print(arena.make_agent("first", "tictactoe").name, len(result.outcome))
    """, extra_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["first", "10"]


def test_a_broken_plugin_is_one_clear_error(tmp_path: Path) -> None:
    info = tmp_path / "tlm_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tlm-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tlm.agents]\nbroken = tlm_not_there:register\n")
    done = fresh_python("""
        import arena
        try:
            arena.make_agent("broken:3", "tictactoe")
        except arena.TlmError as e:
            print(e)
    """, extra_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("agent plugin 'broken' (tlm.agents: tlm_not_there:register) "
                                  "cannot be imported")
