"""Students: fresh policy + value networks, their checkpoints, and the agent that plays them.

A student is built from a spec (``mlp:256x2``, ``cnn:32x3``, ``res:32x2``) and a seed,
never from a teacher's weights. A checkpoint is a directory with ``model.safetensors``
and ``config.json``; :func:`load` (an alias of :func:`load_student`) turns one into an
agent. Importing this package makes any checkpoint directory a valid agent spec for
:func:`arena.agents.make_agent`, hence for ``tlm eval`` and the league.
"""

from pathlib import Path

from arena.agents import register_loader
from arena.core import Agent
from arena.games import Game
from arena.runners import register_payload
from students.agent import StudentAgent
from students.checkpoint import (
    is_checkpoint_dir,
    load_net,
    load_student,
    read_config,
    save_student,
)
from students.networks import (
    StudentNet,
    StudentSpec,
    build_student,
    masked_log_softmax,
    param_count,
    parse_spec,
)
from students.payload import student_from_payload, student_payload

load = load_student


def _load_checkpoint_spec(spec: str, game: Game) -> Agent | None:
    """Claim a spec that is a checkpoint directory; leave every other spec alone."""
    if not is_checkpoint_dir(Path(spec)):
        return None
    return load_student(spec, greedy=True, game=game)


register_loader(_load_checkpoint_spec)
register_payload(StudentAgent, student_payload, student_from_payload)

__all__ = [
    "StudentAgent",
    "StudentNet",
    "StudentSpec",
    "build_student",
    "is_checkpoint_dir",
    "load",
    "load_net",
    "load_student",
    "masked_log_softmax",
    "param_count",
    "parse_spec",
    "read_config",
    "save_student",
]
