"""Distillation: losses, the supervised fit, and offline / DAgger / kickstarting runs
that turn a teacher into a freshly initialized student."""

from distill.config import DistillConfig, load_config, make_config
from distill.kickstart import KickstartMaskablePPO, distill_kickstart, kickstart_weight
from distill.losses import (
    best_move_cross_entropy,
    kl_teacher_student,
    teacher_log_probs,
    value_mse,
)
from distill.run import distill, measure
from distill.train import FitConfig, fit, make_optimizer

__all__ = [
    "DistillConfig",
    "FitConfig",
    "KickstartMaskablePPO",
    "best_move_cross_entropy",
    "distill",
    "distill_kickstart",
    "fit",
    "kickstart_weight",
    "kl_teacher_student",
    "load_config",
    "make_config",
    "make_optimizer",
    "measure",
    "teacher_log_probs",
    "value_mse",
]
