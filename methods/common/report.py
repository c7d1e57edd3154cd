"""What a run leaves behind: one JSON file, PNG figures drawn with Agg, and markdown tables.

Files are written atomically (a temporary file in the same folder, then a rename), so a reader
never sees half a file and an interrupted run leaves the previous one intact.
"""
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np

from addernet.train import atomic_write


def _atomic_write(path, write) -> Path:
    return Path(atomic_write(path, write))


def jsonable(obj):
    """obj with tensors, numpy values, paths and dataclasses turned into JSON types.

    Non-finite floats become None (JSON has no NaN): a missing number, never a made-up one."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if "torch" in sys.modules and isinstance(obj, sys.modules["torch"].Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON: {obj!r}")


def write_json(path, obj, *, indent=2):
    """Write obj (see jsonable) to path as indented JSON, atomically. Returns the path."""
    text = json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def figure(**kw):
    """A matplotlib Figure on the Agg canvas, outside pyplot: no GUI, no global figure list to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path, *, dpi=150):
    """Render fig with Agg to a PNG at path, atomically, whatever pyplot's backend. A pyplot figure is
    closed afterwards. Returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are PNGs; got {path.name!r}")
    out = _atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, backend="agg"))
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return out


def _cell(v, floatfmt):
    if v is None:
        return ""
    if isinstance(v, float):
        v = "" if not math.isfinite(v) else format(v, floatfmt)
    return str(v).replace("|", "\\|").replace("\n", " ")


def table_markdown(rows, cols, *, floatfmt=".2f"):
    """A GitHub markdown table. rows: dicts; cols: keys, or (key, header) pairs. A missing value is blank."""
    if not cols:
        raise ValueError("table_markdown needs at least one column")
    pairs = [c if isinstance(c, (tuple, list)) else (c, c) for c in cols]
    lines = ["| " + " | ".join(_cell(h, floatfmt) for _, h in pairs) + " |",
             "|" + "|".join("---" for _ in pairs) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(k), floatfmt) for k, _ in pairs) + " |")
    return "\n".join(lines) + "\n"


def mean_std(values):
    """{"mean", "std", "n", "values"} of a list of per-seed numbers (std with ddof=1; None for one value)."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_std needs at least one value")
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size),
            "values": v.tolist()}
