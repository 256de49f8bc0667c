"""Independent country facts from the PyPI package ``countryinfo`` (MIT; 254 country files).

The files are read as package data (the package is never imported). They give, per country, its
capital, region and subregion, languages (ISO codes) and currencies (ISO codes). Two of the
project's recall relations can be rebuilt from them with answers a model can say in words:

* ``country_capital``: the ``capital`` field;
* ``country_continent``: the ``region`` field, with the Americas split by ``subregion`` into
  ``South America`` and ``North America`` (for Latin America, by ``intermediateregion``: Central
  America and the Caribbean count as North America), as the project's own continent facts do; Antarctica and empty regions are dropped.

Languages and currencies are ISO codes in this source, not words, so they are not used. Countries
whose name or answer is empty, or whose capital (the first one, where a country lists several) equals the country name (city states), are dropped.
"""

from __future__ import annotations

import importlib.metadata
import json
from functools import lru_cache
from pathlib import Path

from interp.errors import InterpError

PACKAGE = "countryinfo"
INSTALL = "pip install --no-deps countryinfo"
SOURCE_ID = "countryinfo"
_NORTH = {"Northern America", "Central America", "Caribbean"}


def _data_files() -> list[Path]:
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise InterpError(f"the country facts need the countryinfo package: `{INSTALL}`") from None
    files = [Path(str(dist.locate_file(f))) for f in (dist.files or []) if str(f).startswith("countryinfo/data/") and str(f).endswith(".json")]
    files = sorted(f for f in files if f.is_file())
    if not files:
        raise InterpError(f"countryinfo ships no data files here; reinstall it with `{INSTALL}`")
    return files


def continent(region: str, subregion: str, intermediate: str = "") -> str:
    """The project's continent name for a countryinfo region / subregion / intermediate region ('' when none)."""
    if region == "Americas":
        part = intermediate if subregion == "Latin America and the Caribbean" else subregion
        return "South America" if part == "South America" else ("North America" if part in _NORTH else "")
    return region if region in ("Europe", "Asia", "Africa", "Oceania") else ""


@lru_cache(maxsize=1)
def _facts() -> tuple[tuple[str, str, str], ...]:
    out = []
    for f in _data_files():
        d = json.loads(f.read_text(encoding="utf-8"))
        name = (d.get("name") or "").strip()
        if not name:
            continue
        capital = d.get("capital") or ""
        capital = (capital[0] if isinstance(capital, list) and capital else capital if isinstance(capital, str) else "").strip()
        if capital and capital != name:
            out.append(("country_capital", name, capital))
        cont = continent(str(d.get("region") or ""), str(d.get("subregion") or ""), str(d.get("intermediateregion") or ""))
        if cont:
            out.append(("country_continent", name, cont))
    return tuple(sorted(set(out)))


def countryinfo_facts() -> list[dict[str, str]]:
    """Country facts as ``{"relation", "subject", "answer"}`` dicts, sorted by relation and subject."""
    return [{"relation": r, "subject": s, "answer": a} for r, s, a in _facts()]
