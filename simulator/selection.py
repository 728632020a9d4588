"""SESSION arguments that select several sessions: glob patterns over the catalog's names.

`nasdaq/GOOG/*`, `binance/*/2024-08-08` and `nasdaq/AAPL/2012-06-2[01]` match the sessions
under the data directory part by part (venue, symbol, date: `*` never crosses a `/`, and
matching is case-sensitive like the directory names). A pattern that looks like a path
(`./runs/*/quotes.parquet`, `/mnt/data/*`) is globbed on the filesystem instead. Arguments
that are not patterns pass through unchanged (resolve_session checks them), so several plain
names work too. A pattern that matches nothing is an error listing the closest names.
"""

from __future__ import annotations

import difflib
import glob
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Final

from simulator.catalog import session_files
from simulator.errors import DataError

GLOB_CHARS: Final = frozenset("*?[")
CLOSE_MATCHES: Final = 5


def is_pattern(spec: str) -> bool:
    return any(char in GLOB_CHARS for char in spec)


def session_names(data_dir: Path) -> list[str]:
    """Every session under `data_dir` as venue/symbol/date, sorted."""
    return sorted(str(key) for key in session_files(data_dir))


def matches(pattern: str, name: str) -> bool:
    """`pattern` matches `name` part by part (a `*` stays inside its part)."""
    wanted, parts = pattern.strip("/").split("/"), name.split("/")
    return len(wanted) == len(parts) and all(map(fnmatchcase, parts, wanted))


def expand_sessions(specs: Sequence[str], data_dir: Path) -> list[str]:
    """Each SESSION argument, patterns replaced by what they match (sorted); duplicates once."""
    names: list[str] | None = None  # listed once, only when a catalog pattern needs it
    out: list[str] = []
    for spec in specs:
        if not is_pattern(spec):
            found = [spec]
        elif _looks_like_path(spec):
            found = _glob_paths(spec)
        else:
            names = session_names(data_dir) if names is None else names
            found = [name for name in names if matches(spec, name)]
            if not found:
                raise DataError(_no_match(spec, names, data_dir))
        out.extend(name for name in found if name not in out)
    return out


def close_matches(spec: str, names: Sequence[str]) -> list[str]:
    """The names closest to `spec`: those it matches but for letter case first, then those
    most alike with its wildcards removed."""
    folded = spec.lower()
    close = [name for name in names if matches(folded, name.lower())][:CLOSE_MATCHES]
    plain = "".join(char for char in folded if char not in GLOB_CHARS and char != "]")
    lowered = {name.lower(): name for name in names}
    alike = difflib.get_close_matches(plain, list(lowered), n=CLOSE_MATCHES, cutoff=0.4)
    close += [lowered[name] for name in alike if lowered[name] not in close]
    return close[:CLOSE_MATCHES]


def _no_match(spec: str, names: Sequence[str], data_dir: Path) -> str:
    if not names:
        return (
            f"pattern '{spec}' matches no session: {data_dir} holds none yet "
            "(import one with `ticktape data import lobster|binance|coinbase ...`)"
        )
    close = close_matches(spec, names)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return (
        f"pattern '{spec}' matches none of the {len(names)} session(s) under {data_dir}{hint} "
        "(`ticktape data ls` lists them; names are case-sensitive)"
    )


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.endswith(".parquet")


def _glob_paths(spec: str) -> list[str]:
    found = sorted(glob.glob(str(Path(spec).expanduser())))
    if not found:
        raise DataError(f"pattern '{spec}' matches no file or directory")
    return found
