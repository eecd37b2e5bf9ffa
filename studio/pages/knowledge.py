"""Knowledge: bases of documents that bots answer from. Create a base, upload files (progress per
file that survives a reload), see and search its documents, browse, edit and disable chunks, test
retrieval (vector, keyword, hybrid, side by side, matches highlighted), and look at a map of
what the base covers."""

from __future__ import annotations

import colorsys
import html
import re
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from backend.accounts.actor import Role
from backend.services import knowledge as kb_service
from backend.services.models import list_models
from studio.components.errors import show_error
from studio.components.jobs_widgets import job_progress
from studio.components.page_tabs import open_tab, run_tabs
from studio.components.session import current_actor, require_page_role
from studio.formatting import format_number, format_relative
from studio.i18n import N_, _

actor = current_actor()
require_page_role(actor, Role.builder)  # users chat with the bots
can_edit = actor.has_role(Role.builder)

PICK = "kb_pick"
NEXT_PICK = "kb_pick_next"
FLASH = "kb_flash"
CONFIRM = "kb_confirm"
TABS = "kb_tab"
CHUNK_PAGE = 20
REFRESH_S = 2.0
# the map: a legend entry per document up to this many (more: pick the ones to colour)
MAP_LEGEND = 30

MODE_LABELS = {"hybrid": N_("Hybrid (vector + keyword)"), "vector": N_("Vector (meaning)"),
               "keyword": N_("Keyword (BM25)")}
STATUS_LABELS = {"ready": N_("Ready"), "failed": N_("Failed"), "duplicate": N_("Duplicate"),
                 "processing": N_("Processing"), "pending": N_("Waiting")}
SPLITTER_LABELS = {"heading": N_("By headings, then paragraphs"),
                   "recursive": N_("Paragraphs and sentences"), "sentence": N_("Sentences")}
LANGUAGE_LABELS = {"en": N_("English"), "zh": N_("Chinese (jieba words)")}
UPLOAD_TYPES = ["pdf", "docx", "html", "htm", "md", "markdown", "txt", "csv", "tsv", "jsonl",
                "zip"]


def _flash(kind: str, message: str) -> None:
    st.session_state[FLASH] = (kind, message)


def _show_flash() -> None:
    flash = st.session_state.pop(FLASH, None)
    if flash:
        getattr(st, flash[0])(flash[1])


def _embedder_names() -> list[str]:
    try:
        return [m.name for m in list_models(actor=actor, capability="embeddings")]
    except Exception:  # noqa: BLE001 - the bundled model is always there
        return []


def _embedder_label(name: str | None) -> str:
    return name or _("all-MiniLM-L6-v2 (bundled)")


# ------------------------------------------------------------------------------- create


def _create_form() -> None:
    with st.form("kb_create", clear_on_submit=True):
        name = st.text_input(_("Name"), key="kb_new_name",
                             placeholder=_("e.g. Product manuals"))
        description = st.text_input(_("Description"), key="kb_new_description")
        c1, c2 = st.columns(2)
        language = c1.selectbox(_("Language of the documents"), list(LANGUAGE_LABELS),
                                format_func=lambda v: _(LANGUAGE_LABELS[v]),
                                key="kb_new_language")
        embedder = c2.selectbox(_("Embedding model"), [None, *_embedder_names()],
                                format_func=_embedder_label, key="kb_new_embedder")
        c3, c4, c5 = st.columns(3)
        splitter = c3.selectbox(_("How documents are split"), list(SPLITTER_LABELS),
                                format_func=lambda v: _(SPLITTER_LABELS[v]),
                                key="kb_new_splitter")
        size = c4.number_input(_("Chunk size (characters)"), 100, 8000, 1000, 100,
                               key="kb_new_size")
        overlap = c5.number_input(_("Overlap (characters)"), 0, 4000, 150, 50,
                                  key="kb_new_overlap")
        if st.form_submit_button(_("Create the knowledge base"), type="primary"):
            try:
                kb = kb_service.create_knowledge_base(
                    actor=actor, name=name, description=description, embedder=embedder,
                    chunk_size=int(size), chunk_overlap=int(overlap), splitter=splitter,
                    language=language)
            except Exception as exc:  # noqa: BLE001 - shown in words
                show_error(exc, doing=_("Creating the knowledge base"))
                return
            st.session_state[NEXT_PICK] = kb.id
            open_tab(TABS, "upload")
            _flash("success", _("Knowledge base {name} created. Upload documents next.").format(
                name=kb.name))
            st.rerun()


# ----------------------------------------------------------------------------- overview


def _working(kb_id: int) -> bool:
    """An upload or re-index of this base is queued or running."""
    jobs = kb_service.kb_jobs(actor=actor, kb=kb_id, limit=1)
    return bool(jobs) and jobs[0].status in ("queued", "running")


def _counters(kb: kb_service.KnowledgeBaseView) -> None:
    """The base's counters; while an upload or re-index runs they are read again every
    REFRESH_S seconds (documents and chunks count up as files are indexed)."""
    live = _working(kb.id)

    @st.fragment(run_every=REFRESH_S if live else None)
    def _panel() -> None:
        view = kb_service.get_knowledge_base(actor=actor, kb=kb.id) if live else kb
        cols = st.columns(4)
        cols[0].metric(_("Documents"), format_number(view.documents))
        cols[1].metric(_("Chunks"), format_number(view.chunks))
        cols[2].metric(_("Characters"), format_number(view.characters))
        cols[3].metric(_("Failed files"), format_number(view.failed))
        if live:
            if view.pending:
                st.caption(_("Indexing: {n} files still to read; the counters follow.").format(
                    n=format_number(view.pending)))
            if not _working(kb.id):
                st.rerun(scope="app")  # done: show the whole page as it is now

    _panel()


def _overview(kb: kb_service.KnowledgeBaseView) -> None:
    if kb.description:
        st.caption(kb.description)
    _counters(kb)
    s = kb.index or kb.settings
    st.caption(_("Embedding model: {model} · {dim} dimensions · splitting: {splitter}, {size} "
                 "characters, overlap {overlap} · language: {language}").format(
        model=_embedder_label(s.get("embedder")), dim=kb.index.get("dim", "?"),
        splitter=_(SPLITTER_LABELS.get(str(s.get("splitter")), "heading")),
        size=s.get("chunk_size"), overlap=s.get("chunk_overlap"),
        language=_(LANGUAGE_LABELS.get(str(s.get("language")), "en"))))
    if kb.building:
        st.info(_("A new index is being built; searches use the current one until it is "
                  "complete."), icon=":material/construction:")
    elif kb.reindex_needed:
        st.warning(_("The settings changed since this base was indexed. Re-index to apply "
                     "them; search keeps working on the current index meanwhile."))
        if can_edit and st.button(_("Re-index now"), key="kb_reindex"):
            try:
                kb_service.reindex(actor=actor, kb=kb.id)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Starting the re-index"))
            else:
                st.rerun()


# ---------------------------------------------------------------------------- documents


def _documents(kb: kb_service.KnowledgeBaseView) -> None:
    c1, c2 = st.columns([2, 1])
    search = c1.text_input(_("Search documents"), key="kb_doc_search",
                           placeholder=_("File name, title or error"))
    statuses = c2.multiselect(_("Status"), list(STATUS_LABELS),
                              format_func=lambda v: _(STATUS_LABELS[v]), key="kb_doc_status")
    docs = kb_service.list_documents(actor=actor, kb=kb.id, search=search, statuses=statuses)
    if not docs:
        st.info(_("No documents yet. Upload some in the Upload tab.") if not search and
                not statuses else _("No document matches."))
        return
    rows = [{
        _("Document"): d.source, _("Status"): _(STATUS_LABELS.get(d.status, d.status)),
        _("Chunks"): d.chunk_count, _("Characters"): d.char_count, _("Title"): d.title,
        _("Problem"): d.error or "", _("Updated"): format_relative(d.updated_at),
    } for d in docs]
    st.dataframe(rows, hide_index=True, width="stretch")
    if not can_edit:
        return
    by_id = {d.id: d for d in docs}
    c1, c2 = st.columns([3, 1])
    pick = c1.selectbox(_("Document to delete"), [None, *by_id],
                        format_func=lambda i: by_id[i].source if i else _("Choose a document"),
                        key="kb_doc_pick")
    if pick and c2.button(_("Delete document"), key="kb_doc_delete"):
        st.session_state[CONFIRM] = ("doc", pick)
    confirm = st.session_state.get(CONFIRM)
    if confirm and confirm[0] == "doc" and confirm[1] in by_id:
        doc = by_id[confirm[1]]
        st.warning(_("Delete {name} and all its chunks? This cannot be undone.").format(
            name=doc.source))
        b1, b2 = st.columns(2)
        if b1.button(_("Yes, delete it"), key="kb_doc_confirm", type="primary"):
            st.session_state.pop(CONFIRM, None)
            try:
                kb_service.delete_document(actor=actor, kb=kb.id, document_id=doc.id)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Deleting the document"))
                return
            _flash("success", _("{name} deleted.").format(name=doc.source))
            st.rerun()
        if b2.button(_("Keep it"), key="kb_doc_keep"):
            st.session_state.pop(CONFIRM, None)
            st.rerun()


# ------------------------------------------------------------------------------- upload


def _upload(kb: kb_service.KnowledgeBaseView) -> None:
    if can_edit:
        with st.form("kb_upload", clear_on_submit=True):
            files = st.file_uploader(
                _("Files: PDF, Word, HTML, Markdown, text, CSV or JSON Lines (Q&A pairs "
                  "become one chunk each), or a ZIP of them"),
                type=UPLOAD_TYPES, accept_multiple_files=True, key="kb_files")
            if st.form_submit_button(_("Upload and index"), type="primary"):
                if not files:
                    st.warning(_("Choose at least one file first."))
                else:
                    try:
                        kb_service.ingest_files(actor=actor, kb=kb.id, uploads=[
                            (f.name, f.getvalue()) for f in files])
                    except Exception as exc:  # noqa: BLE001
                        show_error(exc, doing=_("Uploading the files"))
                    else:
                        st.rerun()
    jobs = kb_service.kb_jobs(actor=actor, kb=kb.id, limit=5)
    if not jobs:
        st.caption(_("Nothing uploaded yet."))
        return
    latest = jobs[0]
    st.subheader(_("Latest upload"))
    job_progress(latest.id, actor=actor, key="kb_job", show_metrics=False)
    skipped = int((latest.result or {}).get("skipped", 0))
    if skipped:
        st.caption(_("{n} files skipped: stylesheets, images, scripts or fonts, which are not "
                     "indexed.").format(n=skipped))
    live = latest.status in ("queued", "running")

    @st.fragment(run_every=2.0 if live else None)
    def _files() -> None:
        docs = [d for d in kb_service.list_documents(actor=actor, kb=kb.id)
                if d.job_id == latest.id]
        if docs:
            st.dataframe([{_("Document"): d.source,
                           _("Status"): _(STATUS_LABELS.get(d.status, d.status)),
                           _("Chunks"): d.chunk_count, _("Problem"): d.error or ""}
                          for d in docs], hide_index=True, width="stretch")

    _files()


# ------------------------------------------------------------------------------- chunks


def _chunks(kb: kb_service.KnowledgeBaseView) -> None:
    docs = [d for d in kb_service.list_documents(actor=actor, kb=kb.id) if d.chunk_count]
    by_id = {d.id: d.source for d in docs}
    c1, c2 = st.columns([2, 2])
    doc = c1.selectbox(_("Document"), [None, *by_id],
                       format_func=lambda i: by_id[i] if i else _("All documents"),
                       key="kb_chunk_doc")
    search = c2.text_input(_("Text in the chunk"), key="kb_chunk_search")
    total = kb_service.count_chunks(actor=actor, kb=kb.id, document_id=doc, search=search)
    pages = max(1, (total + CHUNK_PAGE - 1) // CHUNK_PAGE)
    page = int(st.number_input(_("Page (of {pages})").format(pages=pages), 1, pages, 1,
                               key="kb_chunk_page")) if pages > 1 else 1
    chunks = kb_service.list_chunks(actor=actor, kb=kb.id, document_id=doc, search=search,
                                    include_disabled=True, limit=CHUNK_PAGE,
                                    offset=(page - 1) * CHUNK_PAGE)
    if not chunks:
        st.info(_("No chunks to show."))
        return
    first = (page - 1) * CHUNK_PAGE + 1
    st.caption(_("Chunks {first}–{last} of {total}").format(
        first=format_number(first), last=format_number(first + len(chunks) - 1),
        total=format_number(total)))
    for c in chunks:
        heading = " > ".join(c.metadata.get("heading_path") or [])
        state = "" if c.enabled else " · " + _("disabled")
        edited = " · " + _("edited") if c.edited else ""
        label = f"{_plain(c.source)} #{c.ord + 1}{state}{edited} · {_preview(c.text)}"
        with st.expander(label):
            if heading:
                st.caption(heading)
            if not can_edit:
                st.text(c.text)
                continue
            new_text = st.text_area(_("Text"), c.text, height=180, key=f"kb_chunk_text_{c.id}")
            enabled = st.toggle(_("Used in search"), c.enabled, key=f"kb_chunk_on_{c.id}")
            if st.button(_("Save the chunk"), key=f"kb_chunk_save_{c.id}"):
                try:
                    kb_service.update_chunk(actor=actor, kb=kb.id, chunk_id=c.id,
                                            text=new_text if new_text != c.text else None,
                                            enabled=enabled)
                except Exception as exc:  # noqa: BLE001
                    show_error(exc, doing=_("Saving the chunk"))
                else:
                    _flash("success", _("Chunk saved; its embedding was updated."))
                    st.rerun()


def _plain(text: str) -> str:
    """Text for a label that Streamlit renders as Markdown: its markup characters out."""
    return re.sub(r"[*_`\[\]#<>|~\\$:]+", " ", text).strip()


def _preview(text: str, limit: int = 90) -> str:
    flat = " ".join(_plain(text).split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + " …"


# ---------------------------------------------------------------------- retrieval test


def _highlighted(text: str, spans: list[Any]) -> str:
    out, last = [], 0
    for s, e in spans:
        out.append(html.escape(text[last:s]))
        out.append(f"<mark>{html.escape(text[s:e])}</mark>")
        last = e
    out.append(html.escape(text[last:]))
    return "".join(out).replace("\n", "<br>")


def _hit_card(n: int, h: kb_service.SearchHit, *, compact: bool = False) -> None:
    heading = " > ".join(h.heading_path)
    page = _(", page {page}").format(page=h.page) if h.page else ""
    with st.container(border=True):
        st.markdown(f"**{n}. {html.escape(h.source)}**{page} · "
                    + _("relevance {percent}").format(percent=f"{h.relevance:.0%}"))
        if heading:
            st.caption(heading)
        ranks = h.metadata.get("ranks") or {}
        if len(ranks) > 1:
            st.caption(_("rank by meaning: {vector} · rank by keywords: {keyword}").format(
                vector=ranks.get("vector", "–"), keyword=ranks.get("keyword", "–")))
        text = h.text if not compact else h.text[:500] + ("…" if len(h.text) > 500 else "")
        spans = [s for s in h.metadata.get("highlights", []) if s[1] <= len(text)]
        st.markdown(_highlighted(text, spans), unsafe_allow_html=True)


def _retrieval(kb: kb_service.KnowledgeBaseView) -> None:
    query = st.text_input(_("Question"), key="kb_query",
                          placeholder=_("Ask what a user would ask"))
    c1, c2, c3 = st.columns([2, 1, 1])
    modes = ["hybrid", "vector", "keyword", "compare"]
    labels = {**{k: _(v) for k, v in MODE_LABELS.items()}, "compare": _("All three side by "
                                                                        "side")}
    mode = c1.radio(_("Search mode"), modes, format_func=lambda m: labels[m], key="kb_mode",
                    horizontal=True)
    k = c2.slider(_("Results"), 1, 20, 5, key="kb_k")
    neighbours = c3.toggle(_("Add neighbouring chunks"), key="kb_neighbours")
    if not query.strip():
        st.caption(_("Type a question to see which chunks a bot would get."))
        return
    try:
        if mode == "compare":
            cols = st.columns(3)
            for col, m in zip(cols, ["vector", "keyword", "hybrid"], strict=True):
                with col:
                    st.subheader(_(MODE_LABELS[m]))
                    hits = kb_service.search(actor=actor, kb=kb.id, query=query, k=k, mode=m)
                    if not hits:
                        st.caption(_("No matching chunks."))
                    for n, h in enumerate(hits, 1):
                        _hit_card(n, h, compact=True)
            return
        hits = kb_service.search(actor=actor, kb=kb.id, query=query, k=k, mode=mode,
                                 neighbors=1 if neighbours else 0)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Searching"))
        return
    if not hits:
        st.info(_("No matching chunks."))
    for n, h in enumerate(hits, 1):
        _hit_card(n, h)
        if neighbours and h.metadata.get("context"):
            with st.expander(_("With neighbouring chunks")):
                st.text(h.metadata["context"])


# ---------------------------------------------------------------------------------- map


def _palette(n: int) -> list[str]:
    """``n`` colours that can be told apart: hues a golden angle apart, in three shades."""
    out = []
    for i in range(n):
        hue = (i * 0.618033988749895) % 1.0
        light, sat = ((0.45, 0.75), (0.32, 0.8), (0.6, 0.7))[(i // 7) % 3]
        r, g, b = colorsys.hls_to_rgb(hue, light, sat)
        out.append(f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})")
    return out


def _map(kb: kb_service.KnowledgeBaseView) -> None:
    st.caption(_("Each dot is a chunk, placed by its meaning (a 2-D projection of the "
                 "embeddings); colours are documents. Clusters show what the base covers; "
                 "an empty area is a topic it lacks."))
    if not kb.chunks:
        st.info(_("The map appears once documents are indexed."))
        return
    points = kb_service.embedding_map(actor=actor, kb=kb.id, limit=2000)
    if len(points) < 2:
        st.info(_("The map appears once documents are indexed."))
        return
    by_source: dict[str, list[kb_service.MapPoint]] = {}
    for p in points:
        by_source.setdefault(p.source, []).append(p)
    sources = sorted(by_source)
    picked = st.multiselect(
        _("Documents to colour"), sources, key="kb_map_pick",
        placeholder=_("All documents") if len(sources) <= MAP_LEGEND else
        _("Type to find documents ({n} in the map)").format(n=len(sources)))
    coloured = picked or (sources if len(sources) <= MAP_LEGEND else [])
    colours = dict(zip(sources, _palette(len(sources)), strict=True))
    fig = go.Figure()

    def trace(name: str, pts: list[kb_service.MapPoint], colour: str, legend: bool,
              group: str | None = None) -> None:
        fig.add_trace(go.Scattergl(
            x=[p.x for p in pts], y=[p.y for p in pts], mode="markers", name=name[-40:],
            text=[f"<b>{html.escape(p.source[-60:])}</b><br>{html.escape(p.heading)}<br>"
                  f"{html.escape(p.preview[:120])}" for p in pts],
            hovertemplate="%{text}<extra></extra>", showlegend=legend, legendgroup=group,
            marker={"size": 6, "opacity": 0.8, "color": colour}))

    others = [p for src in sources if src not in coloured for p in by_source[src]]
    if others:
        if coloured:
            trace(_("Other documents"), others, "rgba(150,150,150,0.35)", True)
        else:  # too many documents for a legend: colours by document, names on hover
            for src in sources:
                trace(src, by_source[src], colours[src], False)
    for src in coloured:
        trace(src, by_source[src], colours[src], True)
    fig.update_layout(height=520, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis={"title": {"text": _("Component 1")}, "showticklabels": False},
                      yaxis={"title": {"text": _("Component 2")}, "showticklabels": False},
                      legend={"title": {"text": _("Document")}},
                      showlegend=bool(coloured))
    st.plotly_chart(fig, width="stretch", key="kb_map")
    if not coloured:
        st.caption(_("{n} documents: point at a dot to see its document, or pick documents "
                     "above to colour them and list them in a legend.").format(n=len(sources)))


# ----------------------------------------------------------------------------- settings


def _settings(kb: kb_service.KnowledgeBaseView) -> None:
    if not can_edit:
        st.caption(_("Only builders can change a knowledge base."))
        return
    s = kb.settings
    embedders = [None, *_embedder_names()]
    with st.form(f"kb_settings_{kb.id}"):
        name = st.text_input(_("Name"), kb.name, key=f"kb_set_name_{kb.id}")
        description = st.text_input(_("Description"), kb.description,
                                    key=f"kb_set_desc_{kb.id}")
        c1, c2 = st.columns(2)
        language = c1.selectbox(_("Language of the documents"), list(LANGUAGE_LABELS),
                                index=list(LANGUAGE_LABELS).index(s["language"]),
                                format_func=lambda v: _(LANGUAGE_LABELS[v]),
                                key=f"kb_set_lang_{kb.id}")
        current = s.get("embedder") if s.get("embedder") in embedders else None
        embedder = c2.selectbox(_("Embedding model"), embedders,
                                index=embedders.index(current), format_func=_embedder_label,
                                key=f"kb_set_emb_{kb.id}")
        c3, c4, c5 = st.columns(3)
        splitter = c3.selectbox(_("How documents are split"), list(SPLITTER_LABELS),
                                index=list(SPLITTER_LABELS).index(s["splitter"]),
                                format_func=lambda v: _(SPLITTER_LABELS[v]),
                                key=f"kb_set_split_{kb.id}")
        size = c4.number_input(_("Chunk size (characters)"), 100, 8000, int(s["chunk_size"]),
                               100, key=f"kb_set_size_{kb.id}")
        overlap = c5.number_input(_("Overlap (characters)"), 0, 4000, int(s["chunk_overlap"]),
                                  50, key=f"kb_set_overlap_{kb.id}")
        st.caption(_("Changing the model, splitting or language needs a re-index; the page "
                     "offers it after saving."))
        if st.form_submit_button(_("Save the changes")):
            try:
                view = kb_service.update_knowledge_base(
                    actor=actor, kb=kb.id, name=name, description=description,
                    language=language, embedder=embedder, splitter=splitter,
                    chunk_size=int(size), chunk_overlap=int(overlap))
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Saving the settings"))
                return
            _flash("success", _("Changes saved.") + (" " + _("Re-index to apply them.")
                                                       if view.reindex_needed else ""))
            st.rerun()
    st.divider()
    if st.button(_("Delete this knowledge base"), key="kb_delete"):
        st.session_state[CONFIRM] = ("kb", kb.id)
    confirm = st.session_state.get(CONFIRM)
    if confirm == ("kb", kb.id):
        st.warning(_("Delete {name} with its {n} documents and all chunks? Bots using it will "
                     "find nothing.").format(name=kb.name, n=kb.documents))
        b1, b2 = st.columns(2)
        if b1.button(_("Yes, delete it"), key="kb_confirm_delete", type="primary"):
            st.session_state.pop(CONFIRM, None)
            try:
                kb_service.delete_knowledge_base(actor=actor, kb=kb.id)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Deleting the knowledge base"))
                return
            st.session_state.pop(PICK, None)
            _flash("success", _("{name} deleted.").format(name=kb.name))
            st.rerun()
        if b2.button(_("Keep it"), key="kb_keep"):
            st.session_state.pop(CONFIRM, None)
            st.rerun()


# --------------------------------------------------------------------------------- page

st.title(_("Knowledge"))
st.caption(_("Upload your team's documents into a knowledge base; bots then answer from them "
             "with sources. Test what they would find before you build the bot."))
_show_flash()
if NEXT_PICK in st.session_state:
    st.session_state[PICK] = st.session_state.pop(NEXT_PICK)

try:
    bases = kb_service.list_knowledge_bases(actor=actor,
                                            search=st.session_state.get("kb_search", ""))
except Exception as exc:  # noqa: BLE001
    show_error(exc, doing=_("Loading the knowledge bases"))
    st.stop()

c1, c2 = st.columns([1, 2])
c1.text_input(_("Search knowledge bases"), key="kb_search")
if bases:
    ids = [b.id for b in bases]
    if st.session_state.get(PICK) not in ids:
        st.session_state[PICK] = ids[0]
    names = {b.id: b for b in bases}
    c2.selectbox(_("Knowledge base"), ids, key=PICK, format_func=lambda i: names[i].name)
if can_edit:
    with st.expander(_("New knowledge base"), expanded=not bases):
        _create_form()
if not bases:
    st.info(_("No knowledge base yet.") if not st.session_state.get("kb_search") else
            _("No knowledge base matches."))
    st.stop()

kb = next(b for b in bases if b.id == st.session_state[PICK])
st.subheader(kb.name)
_overview(kb)
run_tabs(TABS, [
    ("documents", _("Documents"), _documents, (kb,)),
    ("upload", _("Upload"), _upload, (kb,)),
    ("chunks", _("Chunks"), _chunks, (kb,)),
    ("retrieval", _("Retrieval test"), _retrieval, (kb,)),
    ("map", _("Embedding map"), _map, (kb,)),
    ("settings", _("Settings"), _settings, (kb,)),
])
