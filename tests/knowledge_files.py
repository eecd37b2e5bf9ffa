"""Small documents of every type (and broken ones) for the knowledge-base tests, made here."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path


def pdf_bytes(pages: list[str], *, title: str = "") -> bytes:
    """A minimal valid PDF with a Helvetica text layer, one string per page."""
    objects: list[bytes] = []
    n_pages = len(pages)
    # 1 catalog, 2 pages, 3 font, then per page: page object, content stream
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        lines = []
        y = 740
        for line in text.split("\n"):
            esc = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            lines.append(f"BT /F1 11 Tf 60 {y} Td ({esc}) Tj ET")
            y -= 16
        stream = "\n".join(lines).encode("latin-1")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << "
                       f"/Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream
                       + b"\nendstream")
    if title:
        objects.append(f"<< /Title ({title}) >>".encode())
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{n} 0 obj\n".encode() + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    info = f" /Info {len(objects)} 0 R" if title else ""
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\nstartxref\n{xref}\n"
              "%%EOF\n".encode())
    return out.getvalue()


def scanned_pdf_bytes() -> bytes:
    """A PDF whose page only draws shapes: no text layer (as a scan looks to a parser)."""
    data = pdf_bytes(["x"])
    return data.replace(b"BT /F1 11 Tf 60 740 Td (x) Tj ET", b"0 0 m 100 100 l S 20 20 m 9 9 l S")


def docx_bytes() -> bytes:
    import docx

    d = docx.Document()
    d.add_heading("Travel policy", level=1)
    d.add_paragraph("This policy explains how employees book business trips.")
    d.add_heading("Hotels", level=2)
    d.add_paragraph("Hotel rooms may cost at most 180 euros per night in capital cities.")
    d.add_heading("Trains", level=2)
    d.add_paragraph("Trains are preferred over flights for journeys under four hours.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Class"
    table.cell(0, 1).text = "Allowed"
    table.cell(1, 0).text = "First class"
    table.cell(1, 1).text = "Only for trips over six hours"
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


MARKDOWN = """# Espresso machine manual

Welcome to the manual of the BrewMaster 3000. It explains how to keep the machine clean, how
often to descale it, and what to do when it stops brewing or makes unusual noises.

## Cleaning

### Descaling

Descale the machine every two months with citric acid. Run the descaling program and rinse
the water tank twice afterwards.

### Milk frother

Wipe the steam wand with a damp cloth after every use.

## Troubleshooting

If the pump is loud, the water tank is probably empty. Refill it and restart. If the machine
still does not heat up, unplug it for a minute and switch it on again.

```
# not a heading: a comment inside code
```
"""

HTML = """<!DOCTYPE html><html><head><title>Parking rules — Intranet</title>
<script>var tracking = "SECRET_TRACKING_CODE"; alert('x');</script>
<style>.x { color: red }</style></head>
<body><nav class="navbar"><a href="/">Home</a> <a href="/menu">NAVIGATION_MENU_ITEM</a></nav>
<div class="sidebar">Sidebar links SIDEBAR_JUNK</div>
<main><h1>Parking rules</h1><p>Employees may park in the underground garage from 7 am.</p>
<h2>Bicycles</h2><p>Bicycles belong in the racks next to the east entrance.</p>
<script>document.write("INLINE_SCRIPT_TEXT")</script>
<h2>Electric cars</h2><p>Charging stations on level -2 are free for staff.</p></main>
<footer>Copyright FOOTER_TEXT 2024</footer></body></html>
"""

CSV_QA = """question,answer
How many vacation days do I get?,Full-time staff get 28 vacation days per year.
Who approves overtime?,Your team lead approves overtime in the HR portal.
"""

JSONL = ('{"question": "What is the wifi password?", "answer": "Ask reception for the guest '
         'wifi voucher."}\n{"text": "The canteen opens at 11:30 and closes at 14:00."}\n')

TXT = ("Fire safety\n\nIn case of fire, leave the building by the nearest staircase. Do not use "
       "the elevators. The assembly point is the car park on Linden Street.\n")

CHINESE = "报销政策\n\n员工出差的住宿费用每晚不超过五百元。火车票可以全额报销，飞机票需要经理批准。"


def write_corpus(folder: Path) -> dict[str, Path]:
    """One good file of every type, plus a sub-folder."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "manual.md": MARKDOWN.encode(),
        "parking.html": HTML.encode(),
        "policy.docx": docx_bytes(),
        "faq.csv": CSV_QA.encode(),
        "extra.jsonl": JSONL.encode(),
        "fire.txt": TXT.encode(),
        "guide.pdf": pdf_bytes(["Printer guide", "To print in colour, choose the Color queue "
                                "and badge in at the printer.\nToner is ordered by the office "
                                "manager.", "Scanning to email: press Scan, then Email."],
                               title="Printer guide"),
    }
    out = {}
    for name, data in files.items():
        p = folder / name
        p.write_bytes(data)
        out[name] = p
    sub = folder / "team"
    sub.mkdir(exist_ok=True)
    (sub / "onboarding.md").write_text("# Onboarding\n\nNew colleagues receive a laptop and a "
                                       "badge on their first day from the IT desk.\n")
    out["team/onboarding.md"] = sub / "onboarding.md"
    return out


def zip_bytes(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_bomb_bytes() -> bytes:
    """A small archive that would unpack to about 120 MB of zeros."""
    buf = io.BytesIO()
    with (zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
          zf.open("notes.txt", "w", force_zip64=True) as fh):
        block = b"0" * (1 << 20)
        for _ in range(120):
            fh.write(block)
    return buf.getvalue()


# A small generated manual (texinfo / old latex2html style): every page carries the same banner,
# a "Prev | Up | Next | Home" table of links, a "Next: …, Previous: …, Up: …" line whose link
# texts differ from page to page, and the same footer; no class names mark any of it.
MANUAL_TOPICS = [
    ("install", "Installing Gadget",
     "Gadget installs from the gadget-setup package. The installer needs 512 megabytes of free "
     "disk space and asks for the folder where the toolkit lives."),
    ("config", "The configuration file",
     "Settings live in gadget.toml in the home folder. Each section of the file names one "
     "module; unknown keys are reported as warnings at start-up."),
    ("logging", "Logging",
     "Gadget writes its log to gadget.log and rotates the file when it reaches 20 megabytes. "
     "Set log_level to debug to see every request the toolkit makes."),
    ("network", "Proxies and networking",
     "Behind a corporate proxy, set http_proxy in gadget.toml. Connections time out after 45 "
     "seconds and are retried three times with a growing pause."),
    ("backup", "Backups",
     "Run gadget backup to copy the database into the backup folder. Backups are kept for "
     "fourteen days; older archives are deleted every night at two o'clock."),
    ("accounts", "User accounts",
     "An administrator creates user accounts with gadget user add. Every account needs an "
     "e-mail address, and the first login asks the person to choose a passphrase."),
    ("permissions", "Permissions",
     "Permissions are granted to groups, never to single users. The viewer group may read "
     "reports; the editor group may also change dashboards."),
    ("schedule", "Scheduling tasks",
     "Recurring tasks are written in cron syntax in the schedule section. A task that is still "
     "running when its next start comes is skipped, not started twice."),
    ("alerts", "E-mail alerts",
     "Alerts are sent through the SMTP relay named in the mail section. A silenced alert stays "
     "quiet for six hours unless its severity rises to critical."),
    ("themes", "Themes and colours",
     "The dashboard ships a light and a dark theme. Custom themes are CSS files placed in the "
     "themes folder; the toolkit reloads them without a restart."),
    ("plugins", "Writing plugins",
     "A plugin is a Python module with a register function. Gadget loads plugins in "
     "alphabetical order and disables one that raises an error while loading."),
    ("cli", "The command line",
     "Every gadget command accepts --json for scripts. The exit status is zero on success and "
     "three when the toolkit could not reach its database."),
    ("upgrade", "Upgrading",
     "Before an upgrade, stop the scheduler. The upgrade migrates the database in place and "
     "keeps a copy of the old schema named gadget-previous."),
    ("troubleshooting", "Troubleshooting",
     "When the dashboard shows a blank page, clear the browser cache and check that port 8470 "
     "is open. Most start-up failures come from a typo in gadget.toml."),
    ("uninstall", "Uninstalling",
     "Uninstalling removes the program folder but keeps gadget.toml and the backups, so a later "
     "installation finds the old settings again."),
]


def manual_pages(topics: list[tuple[str, str, str]] | None = None) -> dict[str, bytes]:
    """``{file name: HTML}`` of a small manual of generated pages (see ``MANUAL_TOPICS``)."""
    topics = topics or MANUAL_TOPICS
    pages = {}
    for i, (slug, title, body) in enumerate(topics):
        prev_ = topics[i - 1] if i else None
        next_ = topics[i + 1] if i + 1 < len(topics) else None
        cells = []
        if prev_:
            cells.append(f'<td><a href="{prev_[0]}.html">Prev</a></td>')
        cells.append('<td><a href="index.html">Up</a></td>')
        if next_:
            cells.append(f'<td><a href="{next_[0]}.html">Next</a></td>')
        cells.append('<td><a href="index.html">Home</a></td>')
        links = []
        if next_:
            links.append(f'Next: <a href="{next_[0]}.html">{next_[1]}</a>')
        if prev_:
            links.append(f'Previous: <a href="{prev_[0]}.html">{prev_[1]}</a>')
        links.append('Up: <a href="index.html">Gadget Toolkit Manual</a>')
        pages[f"{slug}.html"] = f"""<!DOCTYPE html>
<html><head><title>{title} (Gadget Toolkit 2.4 Manual)</title></head>
<body>
<div><b>Gadget Toolkit 2.4 Manual</b> &mdash; FULL</div>
<table cellpadding="2" border="0"><tr>{''.join(cells)}</tr></table>
<p>{', '.join(links)}</p>
<hr>
<h1>{title}</h1>
<p>{body}</p>
<p>This page belongs to chapter {i + 1} of the manual. {title} is described here for Gadget
version 2.4; earlier versions behave the same unless their release notes say otherwise.</p>
<hr>
<p>Next: <a href="{(next_ or topics[0])[0]}.html">{(next_ or topics[0])[1]}</a>, Up: <a
href="index.html">Gadget Toolkit Manual</a></p>
<table cellpadding="2" border="0"><tr>{''.join(cells)}</tr></table>
<p>Copyright 2024 The Gadget Project. Found a mistake in this manual? Report it on the
project's tracker.</p>
</body></html>
""".encode()
    return pages


NAVIGATION_TEXT = ("Prev", "Home", "Previous:", "Next:", "Gadget Toolkit 2.4 Manual", "FULL",
                   "Copyright 2024", "Found a mistake")
