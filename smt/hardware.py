"""Hardware profiles: the set of floating-point formats a device offers (issue 4).

Profiles live in a TOML data file, ``smt/data/hardware.toml``, that users extend without
touching the code: every file named in the environment variable ``CERTIFY_HARDWARE_PATH``
(``os.pathsep``-separated) and every file passed as ``extra`` (the CLI's ``--profiles``) is
read after the built-in one, in that order; a later profile with the same name replaces an
earlier one. One table per profile::

    [my-npu]
    description = "an NPU with bf16 matrix units"
    extends = "cpu"                 # optional: inherit another profile's formats
    formats = ["fp8_e4m3"]          # added to the inherited ones

Format names are the ones of :mod:`certifier.formats`. tf32 is a compute format (matmul and
convolution inputs only, fp32 storage), so a profile must also offer a storage format.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from certifier.errors import SpecError
from certifier.formats import FORMAT_ORDER, FORMATS

#: The built-in profiles file.
BUILTIN = Path(__file__).with_name("data") / "hardware.toml"
#: Environment variable naming extra profile files.
ENV_VAR = "CERTIFY_HARDWARE_PATH"


@dataclass(frozen=True)
class Profile:
    """One hardware profile: a name, its formats (most precise first) and where it came from."""

    name: str
    formats: tuple[str, ...]
    description: str
    source: str

    @property
    def storage_formats(self) -> tuple[str, ...]:
        """Formats a tensor can be stored in (tf32 stores fp32)."""
        out: list[str] = []
        for f in self.formats:
            s = FORMATS[f].storage.name
            if s not in out:
                out.append(s)
        return tuple(sorted(out, key=FORMAT_ORDER.index))

    def to_json(self) -> dict:
        return {"name": self.name, "formats": list(self.formats), "description": self.description, "source": self.source}


def _read(path: Path) -> dict[str, dict]:
    if not path.exists():
        raise SpecError(f"hardware profiles file not found: {path}", f"check {ENV_VAR} or --profiles")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SpecError(f"cannot read hardware profiles from {path}: {e}") from None
    for name, table in data.items():
        if not isinstance(table, dict):
            raise SpecError(f"{path}: profile {name!r} must be a table ([{name}] with formats = [...])")
    return data


def profile_files(extra: Sequence[str | Path] = ()) -> list[Path]:
    """The files read, in order: built-in, ``CERTIFY_HARDWARE_PATH``, then ``extra``."""
    files = [BUILTIN]
    env = os.environ.get(ENV_VAR, "")
    files += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    files += [Path(p) for p in extra]
    return files


def load_profiles(extra: Sequence[str | Path] = ()) -> dict[str, Profile]:
    """Every known profile, by name (built-in order first, then user additions)."""
    raw: dict[str, tuple[dict, str]] = {}
    for path in profile_files(extra):
        for name, table in _read(path).items():
            raw[name] = (table, str(path) if path != BUILTIN else "built-in")
    out: dict[str, Profile] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> Profile:
        if name in out:
            return out[name]
        if name in seen:
            raise SpecError(f"hardware profile {name!r}: 'extends' forms a cycle ({' -> '.join(seen + (name,))})")
        if name not in raw:
            raise SpecError(f"hardware profile {seen[-1]!r} extends unknown profile {name!r}")
        table, src = raw[name]
        unknown_keys = set(table) - {"description", "extends", "formats"}
        if unknown_keys:
            raise SpecError(f"hardware profile {name!r} ({src}): unknown key(s) {', '.join(sorted(unknown_keys))}", "keys: description, extends, formats")
        fmts: list[str] = []
        base = table.get("extends")
        if base is not None:
            if not isinstance(base, str):
                raise SpecError(f"hardware profile {name!r} ({src}): 'extends' must be a profile name")
            fmts += resolve(base, seen + (name,)).formats
        own = table.get("formats", [])
        if not isinstance(own, list) or not all(isinstance(f, str) for f in own):
            raise SpecError(f"hardware profile {name!r} ({src}): 'formats' must be a list of format names")
        for f in own:
            if f not in FORMATS:
                raise SpecError(f"hardware profile {name!r} ({src}): unknown format {f!r}", f"known formats: {', '.join(FORMAT_ORDER)}")
            if f not in fmts:
                fmts.append(f)
        if not fmts:
            raise SpecError(f"hardware profile {name!r} ({src}) offers no formats")
        if all(FORMATS[f].compute_only for f in fmts):
            raise SpecError(f"hardware profile {name!r} ({src}) offers only compute formats (tf32); add a storage format such as fp32")
        desc = table.get("description", "")
        prof = Profile(name, tuple(sorted(fmts, key=FORMAT_ORDER.index)), str(desc), src)
        out[name] = prof
        return prof

    for name in raw:
        resolve(name, ())
    return {n: out[n] for n in raw}


def get_profile(name: str, extra: Sequence[str | Path] = ()) -> Profile:
    """The profile called ``name``; a :class:`SpecError` naming the known ones otherwise."""
    profiles = load_profiles(extra)
    if name not in profiles:
        raise SpecError(f"unknown hardware profile {name!r}", f"known profiles: {', '.join(profiles)} (certify hardware lists them)")
    return profiles[name]
