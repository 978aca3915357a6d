"""The repository explains itself: code and docs point only at pages that are in it.

Docstrings and comments once pointed at a design note and protocol fact sheets kept
outside the repository (a numbered section of a sheet nobody else has). Everything the code relies
on now lives in docs/ (docs/protocols/, docs/invariants.md), so:

- no source, profile or doc names the outside notes, their folder or a bare "§" section;
- every docs/… page a source file names exists, and so does a section it quotes;
- every relative link in README.md and docs/ resolves;
- the facts the pages state that can be checked mechanically are true: the CRC test
  vectors, the signed-envelope vector, and the tests docs/invariants.md names.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from drivers.crc16 import frame_crc_ok
from sync.ed25519 import PrivateKey
from sync.envelope import seal

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PROTOCOLS = DOCS / "protocols"

SOURCE_DIRS = ("agent", "drivers", "kiosk", "sync", "ui", "bench", "tests", "scripts",
               "firmware_profiles")
SOURCE_SUFFIXES = {".py", ".toml", ".sh"}
SKIP_PARTS = {".venv", "__pycache__", "build", ".git"}

# Built from pieces so this file does not match itself.
_OUTSIDE_NOTES = [
    "DESIGN" + ".md",
    ".." + "/shared",
    "/work" + "/shared",
    *(name + ".md" for name in (
        "bill-acceptors", "receipt-printers", "mqtt-fleet", "kiosk-software",
        "payment-terminals")),
]
FORBIDDEN = re.compile(
    "|".join(re.escape(s) for s in _OUTSIDE_NOTES)
    + "|" + "reference" + r"/[\w-]+\.md"
    + "|" + "\u00a7" + r"\s*\d"  # a bare section sign with a number: a sheet's section
)

ALLOWED: dict[str, str] = {}
"""path -> why it may still name an outside note. Keep it empty."""

DOC_REF = re.compile(r"(docs/[\w/.-]+\.md)")
SECTION_REF = re.compile(
    r"((?:docs/)?(?:protocols/)?(?:ccnet|id003|escpos|mqtt-contract|invariants|architecture"
    r"|operations|ui|mqtt|ledger|performance-targets)\.md),\s*\"([^\"]+)\""
)
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
HEX_ROW = re.compile(r"^\|[^|]*\|\s*`([0-9A-F]{2}(?: [0-9A-F]{2})+)`\s*\|", re.MULTILINE)


def _files(dirs: tuple[str, ...], suffixes: set[str]) -> list[Path]:
    found: list[Path] = []
    for top in dirs:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix in suffixes and not SKIP_PARTS & set(path.parts):
                found.append(path)
    return found


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_nothing_points_outside_the_repository() -> None:
    offenders: list[str] = []
    for path in [*_files(SOURCE_DIRS, SOURCE_SUFFIXES), ROOT / "Makefile", *_doc_files()]:
        if _rel(path) in ALLOWED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FORBIDDEN.search(line):
                offenders.append(f"{_rel(path)}:{number}: {line.strip()}")
    assert not offenders, (
        "these lines point at notes outside the repository; write what the code relies on "
        "into docs/ and point there instead:\n" + "\n".join(offenders)
    )


def test_the_pattern_catches_what_it_must() -> None:
    """The guard above is only as good as its pattern: it must see every form once used."""
    for bad in ("(DESIGN" + ".md layering)", "bill-acceptors" + ".md", "(\u00a7" + "1.4)",
                "/work" + "/shared/reference/receipt-printers" + ".md", "mqtt-fleet" + ".md",
                "reference" + "/kiosk-software" + ".md"):
        assert FORBIDDEN.search(bad), bad
    for fine in ("docs/protocols/ccnet.md, \"Link rules\"", "docs/invariants.md M1-M4",
                 "the reference value", "§ alone"):
        assert not FORBIDDEN.search(fine), fine


def _headings(doc: Path) -> set[str]:
    return {line.lstrip("#").strip() for line in doc.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")}


def _resolve_doc(name: str) -> Path | None:
    if name.startswith("docs/"):
        return ROOT / name
    for folder in (PROTOCOLS, DOCS):
        candidate = folder / name.removeprefix("protocols/")
        if candidate.exists():
            return candidate
    return None


def test_pages_and_sections_named_in_the_code_exist() -> None:
    missing: list[str] = []
    for path in _files(SOURCE_DIRS, SOURCE_SUFFIXES):
        text = path.read_text(encoding="utf-8")
        for name in DOC_REF.findall(text):
            if not (ROOT / name).exists():
                missing.append(f"{_rel(path)}: {name} does not exist")
        for name, wrapped in SECTION_REF.findall(text):
            section = " ".join(wrapped.split())  # a docstring may wrap the name
            doc = _resolve_doc(name)
            if doc is None or not doc.exists():
                missing.append(f"{_rel(path)}: {name} does not exist")
            elif not any(heading.startswith(section) for heading in _headings(doc)):
                missing.append(f"{_rel(path)}: {name} has no section \"{section}\"")
    assert not missing, "\n".join(missing)


def test_links_between_docs_resolve() -> None:
    broken: list[str] = []
    for doc in _doc_files():
        for target in MD_LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (doc.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{_rel(doc)}: {target}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("page", ["ccnet.md", "id003.md"])
def test_every_frame_in_the_protocol_pages_has_a_valid_crc(page: str) -> None:
    """The test-vector tables are copied by people writing tests and tools: a typo there
    would spread. Every frame listed must carry its correct CRC-16/KERMIT."""
    rows = HEX_ROW.findall((PROTOCOLS / page).read_text(encoding="utf-8"))
    assert len(rows) >= 12, f"{page}: expected its test-vector table, found {len(rows)} rows"
    bad = [row for row in rows if not frame_crc_ok(bytes.fromhex(row))]
    assert not bad, f"{page}: frames with a wrong CRC: {bad}"


def test_the_envelope_vector_in_the_contract_is_what_the_code_signs() -> None:
    text = (PROTOCOLS / "mqtt-contract.md").read_text(encoding="utf-8")
    field = dict(re.findall(r"^(seed \(hex\)|public \(b64\)|purpose|body|sig \(b64\))\s+(\S+)$",
                            text, re.MULTILINE))
    key = PrivateKey(bytes.fromhex(field["seed (hex)"]))
    assert base64.b64encode(key.public_key().raw).decode() == field["public (b64)"]
    envelope = seal(key, "desk.test", field["purpose"], field["body"].encode())
    assert f'"sig":"{field["sig (b64)"]}"' in envelope.decode()


def _test_names() -> set[str]:
    names: set[str] = set()
    for path in _files(("tests",), {".py"}):
        names |= set(re.findall(r"^\s*def (test_\w+)", path.read_text(encoding="utf-8"),
                                re.MULTILINE))
    return names


def test_the_tests_named_in_invariants_exist() -> None:
    text = (DOCS / "invariants.md").read_text(encoding="utf-8")
    known = _test_names()
    named = set(re.findall(r"\b(test_m\d+_\w+|test_[a-z0-9_]+(?=`))", text))
    assert named, "docs/invariants.md names no tests"
    assert not named - known, f"named in docs/invariants.md but not defined: {named - known}"
    files = set(re.findall(r"(tests/[\w/]+\.py)", text))
    assert not {f for f in files if not (ROOT / f).exists()}, files
    for rule in range(1, 11):
        assert f"## M{rule} " in text, f"docs/invariants.md has no section for M{rule}"
