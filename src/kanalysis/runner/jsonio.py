"""``results.json``: the key numbers of a run, one section per notebook, as plain JSON."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kanalysis._io import atomic_write_text

RESULTS_SCHEMA_VERSION = "1.0"


def to_jsonable(obj: Any) -> Any:
    """Convert numpy / pandas values to plain JSON types; NaN and infinities become None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, np.ndarray)):
        return [to_jsonable(v) for v in (sorted(obj, key=str) if isinstance(obj, set) else obj)]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str):
        return obj
    return str(obj)


def _dump_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def read_results(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``results.json`` from a run or output folder ({} when absent)."""
    path = Path(output_dir) / "results.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def write_results_section(
    output_dir: str | os.PathLike[str], section: str, values: Mapping[str, Any]
) -> Path:
    """Replace one notebook's section of ``output_dir/results.json`` (atomic read-modify-write)."""
    results = read_results(output_dir)
    results["schema_version"] = RESULTS_SCHEMA_VERSION
    results[section] = to_jsonable(values)
    return atomic_write_text(Path(output_dir) / "results.json", _dump_json(results))

