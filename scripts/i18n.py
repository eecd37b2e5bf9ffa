"""Manage the studio's translation catalogs with Babel.

    python scripts/i18n.py extract   # studio/**/*.py -> studio/locales/studio.pot
    python scripts/i18n.py update    # merge the template into every <lang>/LC_MESSAGES/studio.po
    python scripts/i18n.py compile   # .po -> .mo (the install step runs this)
    python scripts/i18n.py all       # extract + update + compile, then say what needs translating
    python scripts/i18n.py check     # fail (exit 1) listing missing, untranslated or fuzzy entries

The help texts of the settings in ``backend/config.py`` are extracted too (the Settings page
shows them translated). Keywords extracted: ``_``, ``N_``, ``ngettext`` (singular, plural) and ``pgettext`` (context,
message); comments starting with ``TRANSLATORS:`` go to the translator. The English catalog is
filled with the source text itself; every other catalog is translated by a person.
"""

from __future__ import annotations

import argparse
import copy
import io
import re
import string
import sys
import tokenize
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.util import LOCALTZ

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "studio"
LOCALES_DIR = SOURCE_DIR / "locales"
MAPPING_FILE = ROOT / "babel.cfg"
DOMAIN = "studio"
TEMPLATE = LOCALES_DIR / f"{DOMAIN}.pot"
SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "zh_CN")
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}
COMMENT_TAGS = ("TRANSLATORS:",)
PROJECT = "LLM Studio"
WIDTH = 100
FIXED_DATE = datetime(2026, 1, 1, tzinfo=LOCALTZ)
HEADER = """\
# {lang} translations of LLM Studio's web interface.
# Generated and merged by scripts/i18n.py (`make i18n`); edit the msgstr lines only."""


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def po_path(lang: str) -> Path:
    return LOCALES_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(lang: str) -> Path:
    return LOCALES_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"


# ---------------------------------------------------------------------------------- extract


def extract_template() -> Catalog:
    """Every translatable string in ``studio/`` as a template catalog (nothing written)."""
    with MAPPING_FILE.open() as fp:
        method_map, options_map = parse_mapping_cfg(fp)
    catalog = Catalog(project=PROJECT, domain=DOMAIN, charset="utf-8", fuzzy=False,
                      header_comment=HEADER.format(lang="Template for"),
                      copyright_holder=PROJECT, version="0.1")
    found = extract_from_dir(
        SOURCE_DIR, method_map, options_map, keywords=KEYWORDS, comment_tags=COMMENT_TAGS,
        strip_comment_tags=True,
        directory_filter=lambda d: Path(d).name not in {"locales", "__pycache__"},
    )
    for filename, lineno, message, comments, context in found:
        location = (f"studio/{Path(filename).as_posix()}", lineno)
        catalog.add(message, None, [location], auto_comments=comments, context=context)
    for message, location, comment in setting_descriptions():
        catalog.add(message, None, [location], auto_comments=[comment])
    return catalog


def setting_descriptions() -> list[tuple[str, tuple[str, int], str]]:
    """The help text of each setting (``Field(description=...)`` in backend/config.py): the
    Settings page shows it through ``_(description)``, so it is translated like any string."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from backend.config import Settings

    found = []
    for name, field in Settings.model_fields.items():
        if field.description:
            env = f"STUDIO_{name.upper()}"
            found.append((field.description, ("backend/config.py", 1), f"Setting {env}"))
    return found


def _signature(catalog: Catalog) -> list[tuple[object, ...]]:
    """What a template says, minus its dates (so an unchanged source leaves the file alone)."""
    return sorted(
        (repr(m.id), m.context or "", tuple(sorted({f for f, _ in m.locations})),
         tuple(m.auto_comments))
        for m in catalog if m.id
    )


def _serialize(catalog: Catalog) -> bytes:
    # Sorted entries and a fixed creation date: work done in parallel adds lines that merge
    # cleanly instead of every change rewriting the header and shuffling the order.
    catalog = copy.copy(catalog)
    catalog.creation_date = FIXED_DATE
    buf = io.BytesIO()
    write_po(buf, catalog, width=WIDTH, include_lineno=False,
             ignore_obsolete=True, sort_output=True)
    return buf.getvalue()


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def _read(path: Path, lang: str | None = None) -> Catalog:
    with path.open("rb") as fp:
        return read_po(fp, locale=lang, domain=DOMAIN)


def extract() -> Catalog:
    """Write ``studio.pot`` when the set of strings changed; return the template."""
    template = extract_template()
    if TEMPLATE.exists():
        old = _read(TEMPLATE)
        if _signature(old) == _signature(template):
            print(f"extract: {_rel(TEMPLATE)} unchanged ({len(old)} strings)")
            return old
    template.creation_date = datetime.now(LOCALTZ)
    _write_if_changed(TEMPLATE, _serialize(template))
    print(f"extract: wrote {_rel(TEMPLATE)} ({len(template)} strings)")
    return template


# ----------------------------------------------------------------------------------- update


def _fill_source_language(catalog: Catalog) -> None:
    """The English catalog translates every string to itself."""
    for message in catalog:
        if not message.id:
            continue
        if message.fuzzy or not _translated(message):
            message.string = message.id
            message.flags.discard("fuzzy")


def update(template: Catalog | None = None) -> None:
    """Merge the template into each language's catalog (new strings appear untranslated, changed
    ones fuzzy; strings gone from the source are dropped)."""
    template = template or (_read(TEMPLATE) if TEMPLATE.exists() else extract())
    for lang in LANGUAGES:
        path = po_path(lang)
        if path.exists():
            catalog = _read(path, lang)
        else:
            catalog = Catalog(locale=lang, domain=DOMAIN, project=PROJECT, charset="utf-8",
                              fuzzy=False, header_comment=HEADER.format(lang=lang),
                              copyright_holder=PROJECT, last_translator=PROJECT,
                              language_team=f"{PROJECT} {lang}")
        catalog.update(copy.deepcopy(template), update_creation_date=True)
        catalog.obsolete.clear()
        if lang == SOURCE_LANGUAGE:
            _fill_source_language(catalog)
        changed = _write_if_changed(path, _serialize(catalog))
        print(f"update: {_rel(path)} {'updated' if changed else 'unchanged'}")


# ---------------------------------------------------------------------------------- compile


def compile_catalogs() -> None:
    for lang in LANGUAGES:
        source = po_path(lang)
        if not source.exists():
            print(f"compile: {_rel(source)} missing; run `make i18n`", file=sys.stderr)
            continue
        catalog = _read(source, lang)
        buf = io.BytesIO()
        write_mo(buf, catalog, use_fuzzy=False)
        target = mo_path(lang)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(buf.getvalue())
        done = sum(1 for m in catalog if m.id and _translated(m) and not m.fuzzy)
        print(f"compile: {_rel(target)} ({done}/{len(catalog)} translated)")


# ------------------------------------------------------------------------------------ check


def _translated(message: Message) -> bool:
    strings = message.string if isinstance(message.string, tuple | list) else (message.string,)
    return bool(strings) and all(s and s.strip() for s in strings)


def placeholders(text: str) -> set[str] | None:
    """The ``{name}`` fields of a str.format template (``None`` if it is not one)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return None


def _as_tuple(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def _placeholder_problem(message: Message, num_plurals: int) -> str | None:
    """The translation must use exactly the source's ``{fields}``. For a plural, the first form
    (singular, where the language has one) may spell the count out, e.g. "One file"."""
    ids = _as_tuple(message.id)
    plural_fields = placeholders(ids[-1])
    if plural_fields is None:
        return None
    allowed = plural_fields | (placeholders(ids[0]) or set())
    for index, text in enumerate(_as_tuple(message.string)):
        if not text:
            continue
        got = placeholders(text)
        if got is None:
            return "unbalanced braces in the translation"
        singular_form = len(ids) > 1 and index == 0 and num_plurals > 1
        if (singular_form and not got <= allowed) or (not singular_form and got != plural_fields):
            want = ", ".join(sorted(f"{{{p}}}" for p in plural_fields)) or "none"
            have = ", ".join(sorted(f"{{{p}}}" for p in got)) or "none"
            return f"placeholders differ (source: {want}; translation: {have})"
    return None


def _label(message: Message) -> str:
    text = _as_tuple(message.id)[0]
    ctx = f"[{message.context}] " if message.context else ""
    return ctx + (text if len(text) <= 90 else text[:87] + "...")


_CALL_IN_FSTRING = re.compile(r"\{[^{}]*\b(_|N_|ngettext|pgettext)\(\s*[rRuU]?['\"]")


def calls_inside_fstrings() -> list[str]:
    """``f"{_('Part')}"`` is invisible to extraction (the string is never extracted, so it
    never gets translated): each such call, as ``file:line``."""
    found = []
    for path in sorted(SOURCE_DIR.rglob("*.py")):
        with path.open("rb") as fp:
            try:
                tokens = list(tokenize.tokenize(fp.readline))
            except (tokenize.TokenError, SyntaxError):
                continue
        for token in tokens:
            prefix = token.string[:3].lower()
            is_fstring = token.type == tokenize.STRING and "f" in prefix.split('"')[0].split("'")[0]
            fstring_start = getattr(tokenize, "FSTRING_START", None)
            if (is_fstring and _CALL_IN_FSTRING.search(token.string)) or (
                    fstring_start is not None and token.type == fstring_start
                    and _CALL_IN_FSTRING.search(token.line)):
                found.append(f"{_rel(path)}:{token.start[0]}")
    return sorted(set(found))


def find_problems(template: Catalog | None = None) -> list[str]:
    """Everything that stops a catalog from covering the source completely and correctly."""
    template = template or extract_template()
    problems: list[str] = [
        f"{where}: a translation call inside an f-string is never extracted; call it outside "
        "and pass the result in" for where in calls_inside_fstrings()
    ]
    for lang in LANGUAGES:
        path = po_path(lang)
        rel = _rel(path)
        if not path.exists():
            problems.append(f"{rel}: missing; run `make i18n`")
            continue
        catalog = _read(path, lang)
        for message in template:
            if message.id and catalog.get(message.id, context=message.context) is None:
                problems.append(f"{rel}: not in the catalog (run `make i18n`): {_label(message)}")
        for message in catalog:
            if not message.id:
                continue
            if message.fuzzy:
                problems.append(f"{rel}: fuzzy (check, then remove the flag): {_label(message)}")
            elif not _translated(message):
                problems.append(f"{rel}: untranslated: {_label(message)}")
            else:
                issue = _placeholder_problem(message, catalog.num_plurals)
                if issue:
                    problems.append(f"{rel}: {issue}: {_label(message)}")
        for message, errors in catalog.check():
            for error in errors:
                problems.append(f"{rel}: {error}: {_label(message)}")
    return problems


def check() -> int:
    problems = find_problems()
    for line in problems:
        print(line)
    if problems:
        print(f"check: {len(problems)} problem(s). Translate them in the .po files "
              "(`make i18n` adds new strings first).", file=sys.stderr)
        return 1
    print("check: every catalog is complete")
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["extract", "update", "compile", "all", "check"])
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command == "extract":
        extract()
    elif args.command == "update":
        update()
    elif args.command == "compile":
        compile_catalogs()
    elif args.command == "all":
        update(extract())
        compile_catalogs()
        todo = find_problems()
        if todo:
            print(f"all: {len(todo)} entr{'y needs' if len(todo) == 1 else 'ies need'} a "
                  "translator; `python scripts/i18n.py check` lists them.")
    else:
        return check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
