"""Pedagogy in code: the teaching move for each turn (`planner`), the vetted lesson cards it
teaches from (`lessons`), sums worked out step by step (`arithmetic`, `numbers`), and the checks
a model sentence must pass before it is spoken (`checks`)."""

from pipelines.pedagogy.planner import Move, Plan, Teacher

__all__ = ["Move", "Plan", "Teacher"]
