"""vidpipe's Prefect entrypoints (``flows.py:<flow>``) and deployments.

Run a flow directly (``python -c "from flows import extract_features; extract_features('demo')"``), through the CLI
(``vidpipe extract demo``), or serve the deployments below on a Prefect server: ``python flows.py serve``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from pipelines.analyze import analyze_outcomes  # noqa: E402
from pipelines.compare import compare_models  # noqa: E402
from pipelines.demo import demo  # noqa: E402
from pipelines.deploy import deployments  # noqa: E402
from pipelines.extract import extract_features  # noqa: E402
from pipelines.graph import pretrain_graph  # noqa: E402
from pipelines.ingest import ingest  # noqa: E402
from pipelines.refresh import refresh  # noqa: E402
from pipelines.reproduce import reproduce  # noqa: E402
from pipelines.sweep import sweep  # noqa: E402
from pipelines.train import train  # noqa: E402

__all__ = ["ingest", "extract_features", "pretrain_graph", "train", "sweep", "refresh", "compare_models",
           "analyze_outcomes", "demo", "deployments", "reproduce"]


if __name__ == "__main__":  # pragma: no cover - exercised by the server test
    if sys.argv[1:2] == ["serve"]:
        from pipelines.cli import main

        main(["serve", *sys.argv[2:]])
    else:
        print("usage: python flows.py serve [--dataset NAME] [--root DIR]", file=sys.stderr)
        sys.exit(2)
