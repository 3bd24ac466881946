"""Distillation losses: the student-fitting losses of :mod:`students.losses`, under the
names distillation has always used.

:func:`kl_teacher_student` (KL(teacher || student) with a distillation temperature),
:func:`best_move_cross_entropy` (the teacher's best move as a hard label),
:func:`value_mse` and :func:`teacher_log_probs` live in :mod:`students.losses`, so that
a learner below :mod:`distill` (the search learner of :mod:`teachers.search`) fits a
student with the same losses.
"""

from students.losses import (
    best_move_cross_entropy,
    kl_teacher_student,
    teacher_log_probs,
    value_mse,
)

__all__ = ["best_move_cross_entropy", "kl_teacher_student", "teacher_log_probs", "value_mse"]
