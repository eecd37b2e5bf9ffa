"""Streamlit's own words in the reader's language.

Streamlit 1.67 writes some words of its widgets in English inside the browser, with no setting
for them: the file uploader's ("Upload", "200MB per file", "Drag and drop files here", "File
must be 200.0MB or smaller.") and the select boxes' ("Choose an option", "No results").
``streamlit_text()`` (called once per run beside the language switch) puts a small script on
the page that rewrites those words inside these widgets, now and whenever Streamlit draws them
again, keeping the numbers and file types Streamlit fills in. The words are ordinary catalog
entries, so a translator sees them like any other.
"""

from __future__ import annotations

import json
import re

import streamlit as st

from studio.i18n import LANGUAGES, N_, current_language, translate

# Streamlit's English, with Streamlit's own values as named placeholders
TEXTS: tuple[str, ...] = (
    N_("Upload"),
    N_("Upload directories"),
    N_("Drag and drop files here"),
    N_("Drag and drop a file here"),
    N_("Drag and drop directories here"),
    N_("{size} per file"),
    N_("Add files"),
    N_("File must be {size} or smaller."),
    N_("{type} files are not allowed."),
    N_("File size is too small."),
    N_("Only one file is allowed."),
    # select boxes and multiselects (their placeholder when nothing is chosen, their menus)
    N_("Choose an option"),
    N_("Choose options"),
    N_("Choose or add an option"),
    N_("Choose or add options"),
    N_("Add an option"),
    N_("Add options"),
    N_("No options to select"),
    N_("No results"),
    N_("Clear value"),
    N_("Clear selection"),
    N_("Select all"),
)

# where those words live: the widgets, and the menus they open (drawn at the end of the page)
_SCOPE = ('[data-testid="stFileUploader"], [data-testid="stSelectbox"], '
          '[data-testid="stMultiSelect"], [data-baseweb="select"], [data-baseweb="popover"], '
          '[role="listbox"]')

_FIELD = re.compile(r"\{(\w+)\}")


def _pattern(text: str) -> tuple[str, list[str]]:
    """A whole-text regular expression for ``text`` (its fields captured) and the field names."""
    names = _FIELD.findall(text)
    parts = _FIELD.split(text)  # literal, name, literal, name, ..., literal
    regex = "".join(re.escape(p) if i % 2 == 0 else "(.+?)" for i, p in enumerate(parts))
    return f"^{regex}$", names


def rules(lang: str) -> list[tuple[str, str]]:
    """(pattern, replacement) pairs that turn the uploader's words, as Streamlit or any other
    language of ours wrote them, into ``lang``. Replacements use ``$1``-style groups (the
    browser's ``String.replace``)."""
    out: list[tuple[str, str]] = []
    for text in TEXTS:
        target = translate(text, lang)
        for other in LANGUAGES:
            source = translate(text, other)
            if other == lang or source == target:
                continue
            regex, names = _pattern(source)
            if sorted(names) != sorted(_FIELD.findall(target)):
                continue  # a translation that lost a field is not used
            replacement = _FIELD.sub(lambda m, names=names: f"${names.index(m.group(1)) + 1}",
                                     target.replace("$", "$$"))
            out.append((regex, replacement))
    return out


_SCRIPT = """<script>
(function () {
  const w = window;
  w.__studioUploaderRules = %s.map(([p, r]) => [new RegExp(p), r]);
  function swap(text) {
    const t = text.trim();
    if (!t) return null;
    for (const [re, r] of w.__studioUploaderRules) {
      if (re.test(t)) { const v = t.replace(re, r); return v === t ? null : text.replace(t, v); }
    }
    return null;
  }
  function fix() {
    document.querySelectorAll(%s).forEach((u) => {
      const walker = document.createTreeWalker(u, NodeFilter.SHOW_TEXT);
      let n;
      while ((n = walker.nextNode())) {
        const v = swap(n.nodeValue);
        if (v !== null) n.nodeValue = v;
      }
      for (const attr of ['aria-label', 'placeholder', 'title']) {
        u.querySelectorAll('[' + attr + ']').forEach((el) => {
          const v = swap(el.getAttribute(attr));
          if (v !== null) el.setAttribute(attr, v);
        });
      }
    });
  }
  w.__studioUploaderFix = fix;
  if (!w.__studioUploaderObserver) {
    let pending = false;
    w.__studioUploaderObserver = new MutationObserver(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; w.__studioUploaderFix(); });
    });
    w.__studioUploaderObserver.observe(document.body, {subtree: true, childList: true,
      characterData: true, attributes: true, attributeFilter: ['placeholder', 'aria-label']});
  }
  fix();
})();
</script>"""


def streamlit_text() -> None:
    """Put the rewriting script on the page (a few hundred bytes; no visible element)."""
    lang = current_language()
    st.html(_SCRIPT % (json.dumps(rules(lang), ensure_ascii=False), json.dumps(_SCOPE)),
            unsafe_allow_javascript=True)
