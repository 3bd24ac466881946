"""No input reaches a traceback: every ``tlm`` command driven with random flag values and
random file contents (config YAML, student checkpoints, SB3 zips, datasets, positions
files) exits with code 0 or 2, and says what was wrong in one ``error:`` line.

The examples are seeded (``derandomize``), so a failure reproduces. Flag values are
drawn so that each example runs in milliseconds: counts that are valid are tiny, and
most values are not valid at all (negative, huge, beyond 2^63, not numbers, NaN).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sb3_contrib import MaskablePPO

import arena
from arena.positions import positions_path
from scripts.cli import main
from scripts.cli_common import MAX_SEED
from students import build_student, save_student
from teachers import generate_dataset
from teachers.sb3 import make_vec_env

ROOT = Path(__file__).parents[1]
POSITIONS = positions_path("connect_four_solved")

Draw = Callable[..., Any]
"""What draws a value from a strategy: a composite's ``draw`` or ``data.draw``."""

BAD_NUMBERS = [
    "0", "-1", "-3", str(2**63), str(-(2**63)), str(10**30), "1e3", "1.5", "nan", "inf",
    "-inf", "", " ", "x", "0x10", "١", "9" * 400,
]


class Numbers:
    """Flag values: in a *clean* example only valid ones (so that the example gets past
    the flags, to the files and specs), otherwise mostly invalid ones (edge values, any
    integer, junk)."""

    def __init__(self, valid: st.SearchStrategy[Any]) -> None:
        self.valid = valid.map(str)
        self.any = st.one_of(
            st.sampled_from(BAD_NUMBERS),
            st.integers(min_value=-(2**70), max_value=2**70).map(str),
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            self.valid,
        )

    def __call__(self, clean: bool) -> st.SearchStrategy[str]:
        return self.valid if clean else self.any


def number(valid: st.SearchStrategy[Any]) -> Numbers:
    return Numbers(valid)


SEEDS = number(st.sampled_from([0, 1, MAX_SEED, 2**32, 12345]))
FEW = number(st.integers(1, 3))
PLIES = number(st.integers(0, 3))
UNIT = number(st.sampled_from([0.0, 0.1, 0.5, 1.0]))


def mostly(valid: list[str], invalid: list[str]) -> st.SearchStrategy[str]:
    """Valid values three times out of four, so that examples get deep enough."""
    return st.sampled_from(valid * max(1, 3 * len(invalid) // max(len(valid), 1)) + invalid)


BAD_SPECS = st.sampled_from([
    "random", "heuristic", "perfect", "alphabeta:1", "alphabeta:x", "alphabeta:0",
    "alphabeta:-2", "mcts:2", "mcts:0", "mcts:99999999999", "mcts:1.5", "mcts:",
    "sb3:", "sb3:/nonexistent.zip", "wizard", "", ":", "random:3", "league:", "rllib:",
    "/nonexistent/student",
])
SPECS = st.one_of(st.sampled_from(["random", "heuristic", "mcts:2"]), BAD_SPECS)
GAMES = mostly(["tictactoe", "tictactoe", "connect_four"], ["checkers", "", "TicTacToe"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**66), 2**66), st.floats(),
    st.text(max_size=12), st.lists(st.integers(-5, 5), max_size=3),
)


@st.composite
def junk_file(draw: st.DrawFn, directory: Path, name: str) -> Path:
    """A file of random bytes, random text, or nothing."""
    path = directory / name
    kind = draw(st.sampled_from(["bytes", "text", "empty", "missing"]))
    if kind == "bytes":
        path.write_bytes(draw(st.binary(max_size=300)))
    elif kind == "text":
        path.write_text(draw(st.text(max_size=300)))
    elif kind == "empty":
        path.write_bytes(b"")
    return path


def tamper(draw: Draw, obj: Any) -> Any:
    """``obj`` (parsed JSON) with one entry replaced, removed or added at random."""
    if isinstance(obj, dict) and obj:
        key = draw(st.sampled_from(sorted(obj)))
        action = draw(st.sampled_from(["replace", "remove", "recurse", "add"]))
        out = dict(obj)
        if action == "replace":
            out[key] = draw(SCALARS)
        elif action == "remove":
            del out[key]
        elif action == "recurse":
            out[key] = tamper(draw, obj[key])
        else:
            out[draw(st.text(max_size=8))] = draw(SCALARS)
        return out
    if isinstance(obj, list) and obj:
        i = draw(st.integers(0, len(obj) - 1))
        return [*obj[:i], draw(SCALARS), *obj[i + 1:]]
    return draw(SCALARS)


@st.composite
def broken_copy(draw: st.DrawFn, source: Path, directory: Path, name: str) -> Path:
    """A copy of a real checkpoint or dataset directory with one file damaged."""
    target = directory / name
    shutil.copytree(source, target)
    victim = draw(st.sampled_from(sorted(p.name for p in target.iterdir())))
    path = target / victim
    how = draw(st.sampled_from(["tamper", "truncate", "junk", "delete"]))
    if how == "tamper" and path.suffix == ".json":
        path.write_text(json.dumps(tamper(draw, json.loads(path.read_text()))))
    elif how in ("tamper", "truncate"):
        data = path.read_bytes()
        path.write_bytes(data[: draw(st.integers(0, max(len(data) - 1, 0)))])
    elif how == "junk":
        path.write_bytes(draw(st.binary(max_size=200)))
    else:
        path.unlink()
    return target


@st.composite
def config_yaml(draw: st.DrawFn, directory: Path) -> Path:
    """A distill config: random text, or a mapping of real and unknown keys to random values."""
    path = directory / "config.yaml"
    if draw(st.booleans()):
        path.write_text(draw(st.text(max_size=200)))
        return path
    keys = st.sampled_from([
        "game", "teacher", "student", "method", "budget_games", "games_per_round", "seed",
        "out", "dataset", "beta0", "beta_decay", "mix", "temperature", "epsilon",
        "opening_plies", "opening_plies_max", "recent_share", "loss", "distill_temperature",
        "value_weight", "augment", "eval_opponents", "eval_opening_plies", "positions",
        "stop_when_perfect", "not_a_field",
    ])
    fields = draw(st.dictionaries(keys, SCALARS, max_size=5))
    path.write_text(yaml.safe_dump(fields))
    return path


@st.composite
def positions_file(draw: st.DrawFn, directory: Path) -> Path:
    """A positions file: real rows damaged, random CSV-ish text, or junk."""
    path = directory / "positions.csv"
    if draw(st.booleans()):
        lines = POSITIONS.read_text().splitlines()[: draw(st.integers(1, 4))]
        i = draw(st.integers(0, len(lines) - 1))
        cells = lines[i].split(",")
        j = draw(st.integers(0, len(cells) - 1))
        cells[j] = draw(st.one_of(st.text(max_size=20), st.integers().map(str)))
        lines[i] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
        return path
    return draw(junk_file(directory, "positions.csv"))


@st.composite
def broken_zip(draw: st.DrawFn, source: Path, directory: Path) -> Path:
    """A copy of a real SB3 zip with one member damaged (tampered JSON, cut, junk, gone)."""
    target = directory / "model.zip"
    with zipfile.ZipFile(source) as zin:
        members = {name: zin.read(name) for name in zin.namelist()}
    victim = draw(st.sampled_from(sorted(members)))
    how = draw(st.sampled_from(["tamper", "truncate", "junk", "delete"]))
    if how == "tamper" and victim == "data":
        members[victim] = json.dumps(tamper(draw, json.loads(members[victim]))).encode()
    elif how in ("tamper", "truncate"):
        members[victim] = members[victim][: draw(st.integers(0, len(members[victim])))]
    elif how == "junk":
        members[victim] = draw(st.binary(max_size=200))
    else:
        del members[victim]
    with zipfile.ZipFile(target, "w") as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    return target


class Fixtures:
    """Real files to damage, made once: a student checkpoint, an SB3 zip and a dataset."""

    def __init__(self, root: Path) -> None:
        env = make_vec_env("tictactoe", 1)
        MaskablePPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0,
                    policy_kwargs={"net_arch": [8]}).save(root / "ppo.zip")
        self.sb3 = root / "ppo.zip"
        self.student = save_student(build_student("mlp:8x1", "tictactoe", seed=0),
                                    root / "student")
        teacher = arena.make_agent("perfect", "tictactoe")
        assert isinstance(teacher, arena.PolicyAgent)
        self.dataset = generate_dataset("tictactoe", teacher, 4, root / "dataset", seed=0)


@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    return Fixtures(tmp_path_factory.mktemp("real"))


Command = Callable[[Draw, Path, Fixtures], list[str]]


def flags(draw: Draw, clean: bool, options: dict[str, Numbers | st.SearchStrategy[str]]
) -> list[str]:
    """Each option with a drawn value, or left out."""
    argv: list[str] = []
    for flag, values in options.items():
        if draw(st.booleans()):
            argv += [flag, draw(values(clean) if isinstance(values, Numbers) else values)]
    return argv


def agent_file(draw: Draw, tmp: Path, real: Fixtures) -> str:
    """An agent spec naming a damaged checkpoint, a junk SB3 zip, or a plain spec."""
    kind = draw(st.sampled_from(["spec", "spec", "spec", "student", "sb3", "sb3 junk"]))
    if kind == "student":
        return str(draw(broken_copy(real.student, tmp, "student")))
    if kind == "sb3":
        return "sb3:" + str(draw(broken_zip(real.sb3, tmp)))
    if kind == "sb3 junk":
        return "sb3:" + str(draw(junk_file(tmp, "model.zip")))
    return draw(SPECS)


def eval_argv(draw: Draw, tmp: Path, real: Fixtures) -> list[str]:
    clean = draw(st.booleans())
    argv = ["eval", "--game", draw(GAMES), "--agent", agent_file(draw, tmp, real),
            "--games", draw(FEW(clean)), "--json"]
    argv += flags(draw, clean, {"--seed": SEEDS, "--opening-plies": PLIES,
                         "--opponents": mostly(["random", "heuristic,random", "mcts:2"],
                                               [",", "perfect", "wizard"])})
    if not clean and draw(st.booleans()):
        argv += ["--workers", draw(st.sampled_from(["0", "-1", str(10**9), "x"]))]
    extra = draw(st.sampled_from(["none", "agreement", "positions", "out"]))
    if extra == "agreement":
        argv += ["--agreement", str(draw(broken_copy(real.dataset, tmp, "dataset")))]
    elif extra == "positions":
        argv += ["--positions", str(draw(positions_file(tmp)))]
    elif extra == "out":
        argv += ["--out", str(draw(st.sampled_from([tmp / "e.json", tmp, tmp / "no" / "e"])))]
    return argv


def generate_argv(draw: Draw, tmp: Path, real: Fixtures) -> list[str]:
    clean = draw(st.booleans())
    out = draw(st.sampled_from([tmp / "data"] * 4 + [real.dataset, tmp / "no" / "data"]))
    argv = ["generate", "--game", draw(GAMES), "--teacher", draw(SPECS), "--games",
            draw(FEW(clean)), "--out", str(out)]
    return argv + flags(draw, clean, {
        "--seed": SEEDS, "--temperature": number(st.sampled_from([0.0, 1.0, 2.5])),
        "--epsilon": UNIT, "--opening-plies": PLIES, "--games-per-shard": FEW,
    })


def distill_argv(draw: Draw, tmp: Path, real: Fixtures) -> list[str]:
    # Tiny runs when valid: one labelled game a round, one evaluation game, few steps.
    clean = draw(st.booleans())
    argv = ["distill", "--game", draw(mostly(["tictactoe"], ["checkers"])),
            "--teacher", draw(mostly(["perfect", "heuristic"], ["random", "wizard", "mcts:0"])),
            "--student", draw(mostly(["mlp:8x1"], ["mlp:0x1", "cnn:", "res:x", "zzz"])),
            "--method", draw(mostly(["dagger", "offline"], ["nope"])),
            "--budget-games", draw(FEW(clean)), "--games-per-round", "1", "--eval-games", "1",
            "--steps-per-round", draw(FEW(clean)), "--batch-size", draw(number(st.just(8))(clean)),
            "--out", str(tmp / "run")]
    argv += flags(draw, clean, {
        "--seed": SEEDS, "--epsilon": UNIT, "--temperature": UNIT, "--beta0": UNIT,
        "--beta-decay": UNIT, "--recent-share": UNIT, "--opening-plies": PLIES,
        "--lr": number(st.sampled_from([1e-3, 0.1])), "--eval-opening-plies": PLIES,
        "--kickstart-steps": st.sampled_from(BAD_NUMBERS[1:8]) if not clean else st.just("1"),
        "--mix": mostly(["student=1", "teacher=0.5,random=0.5"], ["x=1", "=", "a=-1"]),
    })
    extra = draw(st.sampled_from(["none", "config", "dataset", "positions"]))
    if extra == "config":
        argv += ["--config", str(draw(config_yaml(tmp)))]
    elif extra == "dataset":
        argv += ["--dataset", str(draw(broken_copy(real.dataset, tmp, "dataset")))]
    elif extra == "positions":
        argv += ["--positions", str(draw(positions_file(tmp)))]
    return argv


def teach_argv(draw: Draw, tmp: Path, real: Fixtures) -> list[str]:
    # A valid run trains for seconds, so one of the numbers is always out of range.
    bad = draw(st.sampled_from(["--steps", "--seed"]))
    values = {"--steps": draw(FEW(False)), "--seed": draw(SEEDS(False))}
    values[bad] = draw(st.sampled_from(BAD_NUMBERS[1:9]))
    return ["teach", "--game", draw(GAMES), "--out", str(tmp / "ppo"),
            *[x for flag, value in values.items() for x in (flag, value)]]


def iterate_argv(draw: Draw, tmp: Path, real: Fixtures) -> list[str]:
    # As for teach: a valid run searches and trains for seconds, so one number is bad.
    values = {"--iterations": draw(FEW(False)), "--seed": draw(SEEDS(False)),
              "--simulations": draw(FEW(False)), "--games-per-iteration": draw(FEW(False)),
              "--gate-threshold": draw(UNIT(False)), "--eval-games": draw(FEW(False))}
    values[draw(st.sampled_from(sorted(values)))] = draw(st.sampled_from(BAD_NUMBERS[1:9]))
    return ["iterate", "--game", draw(GAMES), "--student", "mlp:8x1", "--out",
            str(tmp / "exit"), *[x for flag, value in values.items() for x in (flag, value)]]


def small_argv(draw: Draw, tmp: Path, real: Fixtures) -> list[str]:
    return draw(st.sampled_from([
        ["games", "--json"], ["games", "--jsn"], ["demo", "--seed", draw(st.sampled_from(
            BAD_NUMBERS[1:9]))], ["play", "--game", draw(GAMES), "--seed", "-1"],
        ["play", "--game", "tictactoe", "--seat", "third"], ["nonsense"], ["eval"],
        ["league", "status", "--dir", str(tmp / "none")],
        ["league", "run", "--config", str(draw(config_yaml(tmp))), "--dir", str(tmp / "lg")],
    ]))


COMMANDS: list[Command] = [eval_argv, eval_argv, generate_argv, distill_argv, distill_argv,
                           teach_argv, iterate_argv, small_argv]


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``tlm ARGV`` in this process: the exit code and stderr (an exception fails the test)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@settings(max_examples=240, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_no_input_reaches_a_traceback(data: st.DataObject, real_files: Fixtures) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        command = data.draw(st.sampled_from(COMMANDS), label="command")
        argv = command(data.draw, tmp, real_files)
        data.draw(st.just(argv), label="argv")
        code, err = run_cli(argv)
        event(f"{argv[0]} exit {code}")
        assert code in (0, 2), (argv, code, err)
        assert "Traceback" not in err, (argv, err)
        if code == 2:
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)


@pytest.mark.parametrize(("argv", "message"), [
    (["eval", "--game", "tictactoe", "--agent", "random", "--opponents", "random",
      "--games", "10", "--seed", "-3"], "error: --seed must be an integer from 0 to 2^63-1"),
    (["eval", "--game", "tictactoe", "--agent", "random", "--games", "100000000000000"],
     "error: --games must be positive and at most"),
    (["eval", "--game", "connect_four", "--agent", "mcts:2000000", "--games", "100000"],
     "error: the number in agent spec must be at most 1,000,000"),
])
def test_the_reported_crashes_are_one_line_in_a_real_process(argv: list[str],
                                                             message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from scripts.cli import main; sys.exit(main())",
         *argv], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert done.stderr.startswith(message) and len(done.stderr.splitlines()) == 1, done.stderr


def test_search_trees_memory_estimate_is_exact() -> None:
    from teachers.mcts import SearchTrees

    trees = SearchTrees(3, 17, 7)
    assert SearchTrees.nbytes(3, 17, 7) == sum(
        getattr(trees, name).nbytes for name in SearchTrees.__slots__
    )


def test_the_most_simulations_are_searched_a_few_games_at_a_time() -> None:
    # `mcts:1000000` against 100,000 games once asked for terabytes of trees at once; a
    # match now cuts its shards to the agent's max_batch, whose trees fit in memory.
    from arena import make_agent
    from arena.matches import _match_job
    from teachers.mcts import SearchTrees
    from teachers.mcts.search import MAX_TREE_BYTES

    agent = make_agent("mcts:1000000", "connect_four")
    _, plan = _match_job("connect_four", agent, agent, 100_000, 0, record=False, strict=False,
                         observer=None, first_seat=0, opening_plies=0, shard_games=None,
                         runner=None, tally=True)
    assert plan.shard_games == agent.max_batch == 16
    assert SearchTrees.nbytes(plan.shard_games, 1_000_000, 7) <= MAX_TREE_BYTES


def test_every_numeric_flag_of_every_command_is_range_checked() -> None:
    """A guard for flags added later: an int or float option must carry a range check
    (``int_option``, ``float_option`` or ``seed_option`` from ``scripts.cli_common``)."""
    import typer

    from scripts.cli import app

    def commands(command: Any, path: list[str]) -> Any:
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, [*path, name])
        if not hasattr(command, "commands"):
            yield " ".join(path), command

    numeric = unchecked = 0
    for path, command in commands(typer.main.get_command(app), []):
        for param in command.params:
            if param.type_descriptor.annotation not in (int, float):
                continue
            numeric += 1
            check = getattr(param.callback, "__qualname__", "")
            if not check.startswith(("int_range.", "float_range.")):
                unchecked += 1
                print(f"tlm {path} {param.opts[0]} has no range check")
    assert numeric >= 30
    assert unchecked == 0


def test_inputs_that_once_crashed(tmp_path: Path, real_files: Fixtures) -> None:
    # Every game over within its random opening: a dataset with no position.
    code, err = run_cli(["generate", "--game", "tictactoe", "--teacher", "random", "--games",
                         "1", "--opening-plies", "9", "--out", str(tmp_path / "empty")])
    assert (code, err) == (0, "")
    code, err = run_cli(["eval", "--game", "tictactoe", "--agent", "random", "--games", "1",
                         "--agreement", str(tmp_path / "empty")])
    assert (code, err.strip()) == (2, f"error: dataset {tmp_path / 'empty'} holds no positions")
    # A manifest that is not UTF-8, or not a mapping, or whose shards are not files.
    for content in (b"\xff\xfe junk", b"[1, 2]", json.dumps({
        **json.loads((real_files.dataset / "manifest.json").read_text()), "shards": [{}],
    }).encode()):
        broken = tmp_path / f"broken-{len(content)}"
        shutil.copytree(real_files.dataset, broken)
        (broken / "manifest.json").write_bytes(content)
        code, err = run_cli(["eval", "--game", "tictactoe", "--agent", "random", "--games", "1",
                             "--agreement", str(broken)])
        assert code == 2 and err.startswith(f"error: {broken}"), err
    # A YAML parser's report spans lines; the error is still one.
    (tmp_path / "c.yaml").write_bytes(b"\x1f")
    code, err = run_cli(["distill", "--game", "tictactoe", "--config", str(tmp_path / "c.yaml"),
                         "--out", str(tmp_path / "run")])
    assert code == 2 and len(err.splitlines()) == 1 and "not valid YAML" in err, err
