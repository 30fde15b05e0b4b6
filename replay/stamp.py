"""What derived/ was built from: derived/replay.json's fingerprint, and whether it still holds.

Kept apart from the replay driver so that readers that only check it (`pinscope sql`) do not
load the replay's compiled kernels.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ingest import dataset as ds
from ingest.schema import FORMAT_VERSION
from replay.schema import DERIVED_TABLES

# Bump when replay's output for the same events changes: it invalidates every derived/.
REPLAY_VERSION = "3"  # 3: page_id computed where read, no longer stored
STAMP = "replay.json"


def fingerprint(traces: list[dict[str, Any]]) -> str:
    """What derived/ depends on: each trace's content hash, the dataset format, this code."""
    h = hashlib.sha256(f"replay {REPLAY_VERSION} format {FORMAT_VERSION}\0".encode())
    for t in traces:
        h.update(f"{t.get('trace_id')}\0{t.get('sha256')}\0{t.get('kernel')}\0".encode())
    return h.hexdigest()


def is_fresh(dataset: Path) -> bool:
    """derived/ was built from exactly the traces the manifest lists now."""
    stamp = Path(dataset) / ds.DERIVED / STAMP
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return data.get("fingerprint") == fingerprint(ds.traces(dataset))


def is_built(dataset: Path) -> bool:
    """derived/ holds tables (fresh or not)."""
    derived = Path(dataset) / ds.DERIVED
    return any((derived / name).is_dir() for name in DERIVED_TABLES)


def is_stale(dataset: Path) -> bool:
    """derived/ holds tables, but not built from the traces the manifest lists now: a trace
    was ingested (or re-ingested) since, a replay was cut short, or an older pinscope built
    them. Readers that do not replay (`pinscope sql`) warn on it."""
    return is_built(dataset) and not is_fresh(dataset)
