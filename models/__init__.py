"""vidpipe models: the attention block, encoders, the model families (Sec2Sec, MCAT, VAN), the registry, the one
training engine and task metrics.

Importing the package registers every model family, so ``create_model(name, **overrides)`` and ``list_models()``
see them all. The GAT of the graph flow (``models.gat``) is not a ``VidModel`` and is imported on its own.
"""

from models.base import TASKS, ModelConfig, ModelOutput, TaskSpec, VidModel
from models.registry import create_model, list_models, register_model

# Model families register themselves on import (order = nothing depends on it).
from models import convlstm as _convlstm  # noqa: E402,F401
from models import fusion as _fusion  # noqa: E402,F401
from models import mcat as _mcat  # noqa: E402,F401
from models import mtaf as _mtaf  # noqa: E402,F401
from models import sec2sec as _sec2sec  # noqa: E402,F401
from models import siamese as _siamese  # noqa: E402,F401
from models import van as _van  # noqa: E402,F401
from models.engine import FitResult, TrainConfig, evaluate, fit, load_checkpoint, save_checkpoint  # noqa: E402
from models.metrics import compute_metrics, constant_baseline  # noqa: E402

__all__ = [
    "TASKS",
    "FitResult",
    "ModelConfig",
    "ModelOutput",
    "TaskSpec",
    "TrainConfig",
    "VidModel",
    "compute_metrics",
    "constant_baseline",
    "create_model",
    "evaluate",
    "fit",
    "list_models",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
]
