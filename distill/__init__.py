"""Distillation: losses, the supervised fit, and one round loop over teaching
strategies (offline, DAgger, the adaptive teacher and its arms) that turns a teacher
into a freshly initialized student; kickstarting (PPO with a distillation term); expert
iteration (a search guided by the student teaches it).

The names below load on first use, so that reading a preset or a config (the command
line's help does) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distill.config import DistillConfig, load_config, make_config  # noqa: F401
    from distill.iterate import iterate  # noqa: F401
    from distill.iterate_config import IterateConfig, make_iterate_config  # noqa: F401
    from distill.kickstart import (  # noqa: F401
        KickstartMaskablePPO,
        distill_kickstart,
        kickstart_weight,
    )
    from distill.losses import (  # noqa: F401
        best_move_cross_entropy,
        kl_teacher_student,
        teacher_log_probs,
        value_mse,
    )
    from distill.presets import config_with_preset  # noqa: F401
    from distill.run import distill, measure  # noqa: F401
    from distill.store import PositionStore  # noqa: F401
    from distill.strategies import (  # noqa: F401
        Adaptive,
        Exp3,
        FromDataset,
        Games,
        Strategy,
        Uncertain,
        standard_strategies,
    )
    from distill.train import FitConfig, fit, fit_steps, gradient_step, make_optimizer  # noqa: F401

_WHERE = {
    "DistillConfig": "distill.config",
    "load_config": "distill.config",
    "make_config": "distill.config",
    "iterate": "distill.iterate",
    "IterateConfig": "distill.iterate_config",
    "make_iterate_config": "distill.iterate_config",
    "KickstartMaskablePPO": "distill.kickstart",
    "distill_kickstart": "distill.kickstart",
    "kickstart_weight": "distill.kickstart",
    "best_move_cross_entropy": "distill.losses",
    "kl_teacher_student": "distill.losses",
    "teacher_log_probs": "distill.losses",
    "value_mse": "distill.losses",
    "config_with_preset": "distill.presets",
    "distill": "distill.run",
    "measure": "distill.run",
    "PositionStore": "distill.store",
    "Adaptive": "distill.strategies",
    "Exp3": "distill.strategies",
    "FromDataset": "distill.strategies",
    "Games": "distill.strategies",
    "Strategy": "distill.strategies",
    "Uncertain": "distill.strategies",
    "standard_strategies": "distill.strategies",
    "FitConfig": "distill.train",
    "fit": "distill.train",
    "fit_steps": "distill.train",
    "gradient_step": "distill.train",
    "make_optimizer": "distill.train",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'distill' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
