"""Distillation: losses that pull a fresh student towards its teacher's labels."""

from distill.losses import (
    best_move_cross_entropy,
    kl_teacher_student,
    teacher_log_probs,
    value_mse,
)

__all__ = [
    "best_move_cross_entropy",
    "kl_teacher_student",
    "teacher_log_probs",
    "value_mse",
]
