"""What the portal says, and what of it the Russian catalogue translates (tests/test_i18n.py).

* :func:`marked` extracts every marked message (``_``, ``_l``, ``_n``, ``_ln``, ``gettext``,
  ``{% trans %}``) from ``portal/**.py`` and ``templates/**`` with Babel, as ``pybabel
  extract`` does (portal/translations/babel.cfg);
* :func:`unmarked_template_text` finds text a template shows that is not marked;
* :func:`unmarked_python_text` finds flashes, domain errors, form labels and validator
  messages written as bare strings;
* :func:`russian` reads the Russian catalogues (the main one and any parts).

Run as a script it prints, for the files named, the marked messages the Russian catalogue
lacks, as ``.po`` entries to translate::

    .venv/bin/python -m tests.i18n_catalogue templates/billing portal/billing
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
TRANSLATIONS = ROOT / "portal" / "translations"
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "_n": (1, 2), "_ln": (1, 2)}
JINJA = "jinja2.ext:babel_extract"
JINJA_OPTIONS = {"extensions": "jinja2.ext.i18n", "trimmed": "false"}


def python_files() -> list[Path]:
    return sorted(p for p in (ROOT / "portal").rglob("*.py") if "translations" not in p.parts)


def template_files() -> list[Path]:
    return sorted(
        p for p in (ROOT / "templates").rglob("*") if p.suffix in (".html", ".txt") and p.is_file()
    )


def area(path: Path) -> str:
    """``templates/billing``, ``templates/base.html``, ``portal/billing``, ``portal/i18n.py``."""
    parts = path.relative_to(ROOT).parts
    return "/".join(parts[:2])


def areas() -> list[str]:
    return sorted({area(p) for p in python_files() + template_files()})


@dataclass(frozen=True)
class Message:
    msgid: str
    plural: str | None
    where: str  # path:line


def marked(paths: Iterable[Path]) -> list[Message]:
    """The messages marked for translation in ``paths``."""
    found = []
    for path in paths:
        method = "python" if path.suffix == ".py" else JINJA
        options = {} if method == "python" else JINJA_OPTIONS
        for line, text, _comments, _context in extract_from_file(
            method, str(path), keywords=KEYWORDS, options=options, strip_comment_tags=True
        ):
            singular, plural = (text[0], text[1]) if isinstance(text, tuple) else (text, None)
            if singular:
                found.append(Message(singular, plural, f"{path.relative_to(ROOT)}:{line}"))
    return found


def russian() -> dict[str, object]:
    """Every Russian entry: msgid → the catalogue's ``Message`` (main catalogue and parts)."""
    entries: dict[str, object] = {}
    files = [TRANSLATIONS / "ru/LC_MESSAGES/messages.po"]
    files += sorted(TRANSLATIONS.glob("parts/*/ru/LC_MESSAGES/messages.po"))
    for po in files:
        if not po.exists():
            continue
        with po.open("rb") as source:
            for entry in read_po(source, locale="ru"):
                key = entry.id[0] if isinstance(entry.id, tuple) else entry.id
                if key:
                    entries.setdefault(key, entry)
    return entries


def untranslated(messages: Iterable[Message]) -> list[Message]:
    """The messages with no complete, non-fuzzy Russian translation (every plural form)."""
    catalogue = russian()
    missing = []
    for message in messages:
        entry = catalogue.get(message.msgid)
        strings = getattr(entry, "string", None)
        forms = strings if isinstance(strings, tuple) else (strings,)
        plural_ok = message.plural is None or (isinstance(strings, tuple) and len(strings) == 3)
        if entry is None or getattr(entry, "fuzzy", False) or not all(forms) or not plural_ok:
            missing.append(message)
    return missing


# Text shown but not marked --------------------------------------------------------------

# Words that read the same in both languages (acronyms, units, names of standards).
SAME_IN_EVERY_LANGUAGE = {
    "API",
    "CSV",
    "PDF",
    "JSON",
    "SCIM",
    "SSO",
    "UTC",
    "URL",
    "ID",
    "IBAN",
    "BIC",
    "VAT",
    "TOTP",
    "OpenID",
    "OIDC",
    "Stripe",
    "SAML",
    "ISO",
    "x",
}
_WORD = re.compile(r"[A-Za-zА-Яа-яЁё]{2,}")
SHOWN_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description", "label"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        values = dict(attrs)
        for name, value in attrs:
            if name in SHOWN_ATTRIBUTES and value:
                self.texts.append(value)
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self.texts.append(values["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.texts.append(data)


def _shows_words(text: str) -> bool:
    words = _WORD.findall(text.replace("\x00", " "))
    return any(w not in SAME_IN_EVERY_LANGUAGE for w in words)


def unmarked_template_text(path: Path) -> list[str]:
    """Text of a template shown to people but not marked: ``templates/x.html:12: "Reserved"``."""
    from jinja2 import Environment

    environment = Environment(extensions=["jinja2.ext.i18n"], autoescape=True)  # lexed only
    source = path.read_text()
    pieces: list[tuple[int, str]] = []
    for line, kind, value in environment.lex(source):
        pieces.append((line, value if kind == "data" else "\x00"))
    found = []
    if path.suffix == ".txt":
        texts = [(line, text) for line, text in pieces]
    else:
        parser = _Text()
        texts = []
        for line, text in pieces:  # fed piece by piece so each text keeps its line
            before = len(parser.texts)
            parser.feed(text)
            texts += [(line, t) for t in parser.texts[before:]]
        parser.close()
    for line, text in texts:
        if _shows_words(text):
            shown = " ".join(text.replace("\x00", "…").split())
            found.append(f"{path.relative_to(ROOT)}:{line}: {shown!r}")
    return found


_ERRORS = {"DomainError", "ValidationFailed", "NotFound", "PermissionDenied", "Conflict"}


def _error_classes() -> set[str]:
    """The domain error classes: the kernel's, and every class deriving from one of them."""
    names = set(_ERRORS) | {"InvalidState"}
    trees = [ast.parse(p.read_text()) for p in python_files()]
    grew = True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names:
                    bases = {getattr(b, "id", getattr(b, "attr", None)) for b in node.bases}
                    if bases & names:
                        names.add(node.name)
                        grew = True
    return names


def _bare(node: ast.AST | None) -> bool:
    """A string people read, written bare: a literal with words, an f-string, a sum of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _shows_words(node.value)
    if isinstance(node, ast.JoinedStr):
        return any(_bare(v) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.BinOp):
        return _bare(node.left) or _bare(node.right)
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(_bare(e) for e in node.elts)
    return False


def _called(node: ast.Call) -> str:
    func = node.func
    return getattr(func, "id", None) or getattr(func, "attr", None) or ""


# pydantic's Field(description=…), the spec's Tag(description=…) and SCIM's service provider
# configuration document the API for the programmers who call it: English, like its codes and
# field names (docs/I18N.md).
OPENAPI_DOCUMENTATION = {"Field", "Tag", "AuthenticationScheme"}


def unmarked_python_text(path: Path, errors: set[str]) -> list[str]:
    """Flashes, domain errors, form labels and messages written as bare strings in ``path``."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _called(node)
        if name in OPENAPI_DOCUMENTATION:
            continue
        suspects: list[ast.AST | None] = []
        if name == "flash" or name in errors or name.endswith("Field"):
            suspects.append(node.args[0] if node.args else None)
        for keyword in node.keywords:
            if keyword.arg in ("message", "label", "description", "detail"):
                suspects.append(keyword.value)
            if keyword.arg == "errors" and name in errors and isinstance(keyword.value, ast.Dict):
                suspects += list(keyword.value.values)
        for suspect in suspects:
            if _bare(suspect):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(…)")
                break
    return found


def _po_entry(message: Message) -> str:
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = [f"#: {message.where}"]
    if "%(" in message.msgid:
        lines.append("#, python-format")
    lines.append(f"msgid {quoted(message.msgid)}")
    if message.plural is None:
        lines.append('msgstr ""')
    else:
        lines.append(f"msgid_plural {quoted(message.plural)}")
        lines += ['msgstr[0] ""', 'msgstr[1] ""', 'msgstr[2] ""']
    return "\n".join(lines)


def _files(names: Iterable[str]) -> Iterator[Path]:
    for name in names:
        path = ROOT / name
        if path.is_dir():
            yield from (p for p in python_files() + template_files() if path in p.parents)
        elif path.exists():
            yield path


if __name__ == "__main__":
    chosen = list(_files(sys.argv[1:])) or python_files() + template_files()
    seen: set[str] = set()
    for message in untranslated(marked(chosen)):
        if message.msgid not in seen:
            seen.add(message.msgid)
            print(_po_entry(message) + "\n")
    print(f"# {len(seen)} messages to translate", file=sys.stderr)
