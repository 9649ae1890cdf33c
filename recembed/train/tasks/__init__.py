"""Tasks: what a run learns (rating, implicit top-K, click-through), its data, loss and metrics.

Example:
    >>> from recembed.train.config import RunConfig
    >>> task = make_task(RunConfig.from_dict({"train": {"task": "rating"}}))
    >>> task.name
    'rating'
"""

from __future__ import annotations

from recembed.train.config import RunConfig
from recembed.train.tasks.base import Projection, Task
from recembed.train.tasks.ctr import CTRTask
from recembed.train.tasks.implicit import ImplicitTask
from recembed.train.tasks.rating import RatingTask

__all__ = ["Task", "Projection", "RatingTask", "ImplicitTask", "CTRTask", "TASK_CLASSES", "make_task"]

TASK_CLASSES: dict[str, type[Task]] = {"rating": RatingTask, "implicit": ImplicitTask, "ctr": CTRTask}


def make_task(config: RunConfig) -> Task:
    """The task named by ``config.train.task`` (data not loaded yet)."""
    return TASK_CLASSES[config.train.task](config)
