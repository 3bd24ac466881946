"""Students: fresh policy + value networks, their checkpoints, and the agent that plays them.

A student is built from a spec (``mlp:256x2``, ``cnn:32x3``, ``res:32x2``) and a seed,
never from a teacher's weights. A checkpoint is a directory with ``model.safetensors``
and ``config.json``; :func:`load` (an alias of :func:`load_student`) turns one into an
agent. Importing this package makes any checkpoint directory a valid agent spec for
:func:`arena.agents.make_agent`, hence for ``tlm eval`` and the league.

How a student is fitted to labels lives here too, below every teacher:
:mod:`students.losses` (KL to a teacher's distribution, its best move, the value's
squared error) and :mod:`students.fit` (one gradient step, epochs over arrays), shared
by :mod:`distill` and the search learner of :mod:`teachers.search`.
"""

from pathlib import Path

from arena.agents import register_loader
from arena.core import Agent
from arena.games import Game
from arena.runners import register_payload
from students.agent import StudentAgent
from students.checkpoint import (
    is_checkpoint_dir,
    load_any_student,
    load_net,
    load_recurrent_net,
    load_student,
    read_config,
    save_student,
)
from students.fit import FitArrays, FitConfig, fit_arrays, gradient_step, make_optimizer
from students.losses import best_move_cross_entropy, kl_teacher_student, value_mse
from students.networks import (
    StudentNet,
    StudentSpec,
    build_student,
    masked_log_softmax,
    param_count,
    parse_spec,
)
from students.payload import student_from_payload, student_payload
from students.recurrent import RecurrentStudentAgent, RecurrentStudentNet

load = load_student


def _load_checkpoint_spec(spec: str, game: Game) -> Agent | None:
    """Claim a spec that is a checkpoint directory; leave every other spec alone."""
    if not is_checkpoint_dir(Path(spec)):
        return None
    return load_any_student(spec, greedy=True, game=game)


def build_recurrent_student(spec: str, game: str | Game, seed: int) -> RecurrentStudentNet:
    """A freshly initialized recurrent student (``gru:128``) for ``game``."""
    return RecurrentStudentNet(parse_spec(spec), game, seed)


register_loader(_load_checkpoint_spec)
register_payload(StudentAgent, student_payload, student_from_payload)
register_payload(RecurrentStudentAgent, student_payload, student_from_payload)

__all__ = [
    "FitArrays",
    "FitConfig",
    "RecurrentStudentAgent",
    "RecurrentStudentNet",
    "StudentAgent",
    "StudentNet",
    "StudentSpec",
    "best_move_cross_entropy",
    "build_recurrent_student",
    "build_student",
    "fit_arrays",
    "gradient_step",
    "is_checkpoint_dir",
    "kl_teacher_student",
    "load",
    "load_any_student",
    "load_net",
    "load_recurrent_net",
    "load_student",
    "make_optimizer",
    "masked_log_softmax",
    "param_count",
    "parse_spec",
    "read_config",
    "save_student",
    "value_mse",
]
