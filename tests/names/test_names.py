"""names: the task, modality and graph names features/ and models/ share."""

from __future__ import annotations

import ast
from pathlib import Path

import names
from names import EARLY_TREND, MODALITIES, PAPER_TASKS, TASK_NAMES, TASK_TARGETS


def test_tasks_and_modalities_are_consistent():
    assert TASK_NAMES == tuple(TASK_TARGETS) and set(PAPER_TASKS) < set(TASK_NAMES)
    assert all(targets and len(set(targets)) == len(targets) for targets in TASK_TARGETS.values())
    assert len(set(MODALITIES)) == len(MODALITIES) and EARLY_TREND in MODALITIES


def test_models_and_features_read_the_same_definitions():
    from features.graph import USES as features_uses
    from models.base import TASKS
    from models.gat import USES as models_uses

    assert {t: s.targets for t, s in TASKS.items()} == dict(TASK_TARGETS)
    assert all(s.k == len(s.targets) for s in TASKS.values())
    assert features_uses is models_uses is names.USES


def test_names_imports_only_the_standard_library():
    tree = ast.parse(Path(names.__file__).read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "types", "typing"}, imported
