"""Trained agents that ship with tlm (spec ``zoo:GAME`` and ``zoo:GAME,sims=N``).

A zoo entry is a student checkpoint in package data (``teachers/data/zoo/GAME/``:
``config.json`` and ``model.safetensors``, as :func:`students.save_student` writes
them) with ``provenance.json`` beside it: the command, seed and commit that made it,
the SHA-256 of each file, and the figures it was measured at. ``zoo:GAME`` plays the
raw student (its most probable move); ``zoo:GAME,OPTIONS`` plays its PUCT search with
the options of ``puct:PATH,OPTIONS`` (``sims=400``, ``bf16=1``, ...). The files are
checked against their hashes before the weights are read.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from arena.agents import register_agent
from arena.core import Agent, TlmError
from arena.games import Game
from teachers.league.store import tree_sha256

ZOO_USAGE = ("zoo:GAME[,sims=N,...] (a trained student shipped with tlm; with options, "
             "its PUCT search: the options of puct:PATH)")
PROVENANCE = "provenance.json"


def zoo_games() -> list[str]:
    """The games with a shipped agent."""
    root = resources.files("teachers") / "data" / "zoo"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / PROVENANCE).is_file())


def zoo_dir(game: str) -> Path:
    """The package-data directory of ``game``'s shipped agent.

    Raises:
        TlmError: no agent ships for ``game``.
    """
    path = Path(str(resources.files("teachers") / "data" / "zoo" / game))
    if not (path / PROVENANCE).is_file():
        shipped = ", ".join(zoo_games()) or "none"
        raise TlmError(f"no zoo agent for {game!r} (shipped: {shipped})")
    return path


def read_provenance(directory: Path) -> dict[str, Any]:
    """A zoo entry's provenance (command, seed, commit, hashes, figures).

    Raises:
        TlmError: the file is missing, damaged or has no hash table.
    """
    path = directory / PROVENANCE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TlmError(f"damaged zoo provenance {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), dict):
        raise TlmError(f"damaged zoo provenance {path}: no sha256 table")
    return data


def verify(directory: Path) -> dict[str, Any]:
    """Check a zoo entry's files against their recorded hashes; return its provenance.

    Raises:
        TlmError: a file is missing or its hash differs.
    """
    info = read_provenance(directory)
    for name, want in info["sha256"].items():
        path = directory / name
        if not path.is_file():
            raise TlmError(f"zoo entry {directory}: {name} is missing")
        if tree_sha256(path) != want:
            raise TlmError(f"zoo entry {directory}: {name} does not match its recorded hash")
    return info


def make_zoo_agent(arg: str | None, game: Game) -> Agent:
    """The ``zoo:GAME[,OPTIONS]`` spec (see :data:`ZOO_USAGE`).

    Raises:
        TlmError: no agent for that game, a game other than the one played, damaged
            files, or a bad search option.
    """
    name, _, options = (arg or "").partition(",")
    name = name.strip() or game.name
    if name != game.name:
        raise TlmError(f"zoo:{name} plays {name}, not {game.name}")
    directory = zoo_dir(name)
    verify(directory)
    if options.strip():
        from teachers.mcts.puct_agent import make_puct_agent

        return make_puct_agent(f"{directory},{options}", game)
    from students import load_student

    return load_student(directory, greedy=True, game=game)


def register() -> None:
    """Make ``zoo:GAME[,OPTIONS]`` an agent spec (the ``tlm.agents`` entry point ``zoo``)."""
    register_agent("zoo", make_zoo_agent, ZOO_USAGE)


register()


def write_zoo_entry(checkpoint: str | Path, root: str | Path, info: dict[str, Any]) -> Path:
    """Copy a student checkpoint into ``root/GAME`` with its provenance (``info`` plus
    the files' SHA-256): how a trained student becomes a zoo entry.

    Raises:
        TlmError: ``checkpoint`` is not a student checkpoint.
    """
    from students import read_config

    source = Path(checkpoint)
    game = read_config(source)["game"]
    target = Path(root) / game
    target.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(source / name, target / name)
        hashes[name] = tree_sha256(target / name)
    text = json.dumps({"game": game, **info, "sha256": hashes}, indent=2, sort_keys=True)
    (target / PROVENANCE).write_text(text + "\n")
    return target
