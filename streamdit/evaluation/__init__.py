"""Measured quality of a toy-world model with the judge, on held-out seeds (python -m streamdit eval)."""
from .report import render_markdown
from .scores import EvalSettings, evaluate_model, motion_speed, wilson

__all__ = ["EvalSettings", "evaluate_model", "motion_speed", "render_markdown", "wilson"]
