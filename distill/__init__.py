"""Distillation: losses, the supervised fit, and offline / DAgger / kickstarting runs
that turn a teacher into a freshly initialized student."""

from distill.config import DistillConfig, load_config, make_config
from distill.losses import (
    best_move_cross_entropy,
    kl_teacher_student,
    teacher_log_probs,
    value_mse,
)
from distill.run import distill, measure, top1_agreement
from distill.train import FitConfig, fit, make_optimizer

__all__ = [
    "DistillConfig",
    "FitConfig",
    "best_move_cross_entropy",
    "distill",
    "fit",
    "kl_teacher_student",
    "load_config",
    "make_config",
    "make_optimizer",
    "measure",
    "teacher_log_probs",
    "top1_agreement",
    "value_mse",
]
