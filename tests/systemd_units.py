"""One way tests verify a shipped systemd unit with `systemd-analyze verify`.

The unit names installed paths (/opt/kiosk-agent/venv/..., /etc/kiosk/*.env) that exist
on a host, not here: the copy verified points them at links into this checkout's venv and
at copies of the env files' shipped examples, so the examples are verified with the unit."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

NEEDS_ANALYZE = "systemd-analyze is needed (Debian package systemd; scripts/system-deps.sh)"

# $NAME or ${NAME}; `$$` is systemd's literal dollar sign
_REFERENCE = re.compile(r"(?<!\$)\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Verified:
    text: str  # the unit as verified: installed paths replaced by the temporary ones
    result: subprocess.CompletedProcess[str]


def verify_unit(tmp_path: Path, unit: Path, executables: Mapping[str, Path],
                env_files: Mapping[str, Path], *, name: str | None = None,
                also: Iterable[Path] = ()) -> Verified:
    """Verify `unit` (written as `name`, e.g. a template's instance) and the units in
    `also` (a timer) together, with each installed executable a link to a repository
    one and each env file a copy of its shipped example, both under tmp_path."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, NEEDS_ANALYZE
    text = unit.read_text(encoding="utf-8")
    replacements: dict[str, str] = {}
    for installed, target in executables.items():
        # a path the unit does not name would make the replacement silently do nothing
        assert installed in text, (installed, unit)
        # not the installed path under tmp_path: the unit verified must not name it at all
        link = tmp_path / "venv" / "bin" / Path(installed).name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        replacements[installed] = str(link)
    for installed, example in env_files.items():
        assert (f"EnvironmentFile={installed}\n" in text
                or f"EnvironmentFile=-{installed}\n" in text), (installed, unit)
        copy = tmp_path / Path(installed).name
        shutil.copyfile(example, copy)
        replacements[installed] = str(copy)

    def rewrite(source: str) -> str:
        for installed in sorted(replacements, key=len, reverse=True):
            source = source.replace(installed, replacements[installed])
        return source

    written = tmp_path / (name or unit.name)
    written.write_text(rewrite(text), encoding="utf-8")
    others = []
    for other in also:
        others.append(tmp_path / other.name)
        others[-1].write_text(rewrite(other.read_text(encoding="utf-8")), encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(written), *map(str, others)],
                            capture_output=True, text=True, timeout=60)
    return Verified(written.read_text(encoding="utf-8"), result)


def exec_start_variables(text: str) -> set[str]:
    """The variables a unit's ExecStart lines take from its environment."""
    lines = [x for x in text.splitlines() if x.startswith("ExecStart=")]
    assert lines, "the unit has an ExecStart"
    return {a or b for line in lines for a, b in _REFERENCE.findall(line)}


def env_file_variables(path: Path) -> dict[str, str]:
    """An env file's NAME=value lines, for checking a shipped example against its unit.
    Quoted values are refused rather than unquoted: the examples need none."""
    variables = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, sep, value = line.partition("=")
            assert sep and not value.strip().startswith(("'", '"')), f"{path}: {line!r}"
            variables[key.strip()] = value.strip()
    return variables
