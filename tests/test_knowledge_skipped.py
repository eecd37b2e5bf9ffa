"""Files of types the studio never indexes (stylesheets, images, scripts, fonts) in a folder or a
zip are skipped and counted as skipped, not failed: `studio kb ingest KB FOLDER --wait` over a
generated HTML manual exits 0. A file it tries to index and cannot is still a failure."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from typer.testing import CliRunner

from backend.accounts.actor import Actor
from backend.services import jobs as jobs_service
from backend.services import knowledge as kbs
from tests import knowledge_files as files

SYSTEM = Actor.system()
PAGE = ("<html><head><link rel='stylesheet' href='stylesheet.css'></head><body><h1>{t}</h1>"
        "<p>{t} explains how the pump station keeps the canal level through the winter.</p>"
        "</body></html>")


def _manual(folder: Path) -> Path:
    (folder / "guide" / "_static").mkdir(parents=True)
    (folder / "index.html").write_text(PAGE.format(t="Overview"))
    (folder / "guide" / "pumps.html").write_text(PAGE.format(t="Pumps"))
    (folder / "stylesheet.css").write_text("body { color: black }")
    (folder / "guide" / "_static" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / "guide" / "_static" / "search.js").write_text("var index = {};")
    (folder / "guide" / "_static" / "font.woff2").write_bytes(b"wOF2" + bytes(32))
    return folder


def test_cli_ingest_of_an_html_manual_skips_its_assets_and_exits_0(tmp_path: Path) -> None:
    from backend.cli import app

    name = f"manual-{uuid.uuid4().hex[:6]}"
    kbs.create_knowledge_base(actor=SYSTEM, name=name)
    res = CliRunner().invoke(app, ["kb", "ingest", name, str(_manual(tmp_path / "manual")),
                                   "--wait", "--json"])
    assert res.exit_code == 0, res.stderr
    job = json.loads(res.stdout)
    assert job["status"] == "succeeded"
    assert (job["result"]["ingested"], job["result"]["failed"], job["result"]["skipped"]) == (
        2, 0, 4)
    docs = {d.source: d.status for d in kbs.list_documents(actor=SYSTEM, kb=name)}
    assert docs == {"index.html": "ready", "guide/pumps.html": "ready"}
    res = CliRunner().invoke(app, ["kb", "ingest", name, str(tmp_path / "manual"), "--wait"])
    assert res.exit_code == 0, res.stderr
    assert "4 files skipped" in res.stderr


def test_zip_assets_are_skipped_and_other_refusals_fail(tmp_path: Path) -> None:
    name = f"zipped-{uuid.uuid4().hex[:6]}"
    kbs.create_knowledge_base(actor=SYSTEM, name=name)
    archive = files.zip_bytes({
        "site/index.html": PAGE.format(t="Overview").encode(),
        "site/stylesheet.css": b"body { color: black }",
        "site/img/logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        "site/inner.zip": files.zip_bytes({"a.txt": b"inner text"}),
        "site/data.xyz": b"no loader reads this",
    })
    job_id = kbs.ingest_files(actor=SYSTEM, kb=name, uploads=[("site.zip", archive)],
                              enqueue=False)
    done = jobs_service.run_inline(actor=SYSTEM, job_id=job_id)
    assert done.status == "succeeded", done.error
    assert (done.result["ingested"], done.result["skipped"], done.result["failed"]) == (1, 2, 2)
    docs = {d.source: (d.status, d.error or "") for d in kbs.list_documents(actor=SYSTEM, kb=name)}
    assert docs["site.zip/site/index.html"][0] == "ready"
    assert docs["site.zip/site/inner.zip"][0] == "failed"
    assert "inside archives" in docs["site.zip/site/inner.zip"][1]
    assert docs["site.zip/site/data.xyz"][0] == "failed"
    assert "not indexed" in docs["site.zip/site/data.xyz"][1]
    assert not any(s.endswith((".css", ".svg")) for s in docs)


def test_a_named_stylesheet_alone_is_still_refused(tmp_path: Path) -> None:
    name = f"single-{uuid.uuid4().hex[:6]}"
    kbs.create_knowledge_base(actor=SYSTEM, name=name)
    css = tmp_path / "stylesheet.css"
    css.write_text("body { color: black }")
    job_id = kbs.ingest_files(actor=SYSTEM, kb=name, paths=[css], enqueue=False)
    done = jobs_service.run_inline(actor=SYSTEM, job_id=job_id)
    assert done.result["failed"] == 1 and done.result.get("skipped", 0) == 0
