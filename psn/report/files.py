"""Writing the report's CSV and JSON files (atomically; NaN as an empty cell or null)."""
import csv
import io
import json
import math
import re

import numpy as np

from preprocessing.atomic import write_atomic


def write_csv(path, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else csv_num(v) for v in r])
    return write_atomic(path, buf.getvalue())


def csv_num(v):
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else repr(float(v))
    if isinstance(v, np.integer):
        return str(int(v))
    return v


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)  # JSON has no NaN
    return obj


def write_json(path, obj):
    return write_atomic(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def safe_name(name):
    """A run name usable as a folder name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "run"
