"""Opening ZIP archives safely: no path may leave the target folder, and an archive that would
unpack to far more than it weighs (a zip bomb) is refused before anything is written."""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from backend.knowledge.loaders import (
    FILE_TYPES,
    SKIPPED_REASON,
    DocumentError,
    file_type_for,
    never_indexed,
)

MAX_MEMBERS = 5000
MAX_RATIO = 200  # uncompressed / compressed, whole archive


@dataclass(frozen=True)
class Member:
    name: str  # path inside the archive
    path: Path  # where it was written
    file_type: str


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return (p.is_absolute() or name.startswith(("/", "\\")) or ".." in p.parts
            or (len(name) > 1 and name[1] == ":"))


def extract_zip(path: Path, dest: Path, *, display: str, max_total_bytes: int,
                max_file_bytes: int
                ) -> tuple[list[Member], list[tuple[str, str]], list[tuple[str, str]]]:
    """Files of known types from the archive; (name, reason) for members skipped (types never
    indexed: stylesheets, images, scripts, fonts); (name, reason) for members refused (a type
    that is not indexed, an archive inside, over the size limit): those count as failed."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DocumentError(f"{display} is not a readable ZIP archive ({exc}). Create the "
                            "archive again and upload it.") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        bad = [i.filename for i in infos if _unsafe(i.filename)]
        if bad:
            raise DocumentError(
                f"{display} contains paths that point outside the archive ({bad[0]!r}). Such "
                "archives are refused; create it again from the folder itself.")
        if any(stat.S_ISLNK(i.external_attr >> 16) for i in infos):
            raise DocumentError(f"{display} contains symbolic links, which are refused. Create "
                                "the archive without links.")
        if len(infos) > MAX_MEMBERS:
            raise DocumentError(f"{display} holds {len(infos)} files; at most {MAX_MEMBERS} are "
                                "accepted per archive. Split it into smaller archives.")
        total = sum(i.file_size for i in infos)
        packed = max(1, sum(i.compress_size for i in infos))
        if total > max_total_bytes or total / packed > MAX_RATIO and total > 10 * 1024 * 1024:
            raise DocumentError(
                f"{display} would unpack to {total / 1e6:,.0f} MB from {packed / 1e6:,.1f} MB "
                "(a zip bomb, or simply too large). It is refused; upload the documents in "
                "smaller archives.")
        members: list[Member] = []
        skipped: list[tuple[str, str]] = []
        refused: list[tuple[str, str]] = []
        dest.mkdir(parents=True, exist_ok=True)
        for n, info in enumerate(infos):
            name = info.filename.replace("\\", "/")
            base = PurePosixPath(name).name
            if base.startswith(".") or "__MACOSX" in name:
                continue
            if never_indexed(name):
                skipped.append((name, SKIPPED_REASON))
                continue
            ftype = file_type_for(name)
            if ftype is None:
                refused.append((name, "this file type is not indexed. Accepted: "
                                      f"{', '.join(sorted(FILE_TYPES))}."))
                continue
            if ftype == "zip":
                refused.append((name, "archives inside archives are not opened; upload it "
                                      "on its own"))
                continue
            if info.file_size > max_file_bytes:
                refused.append((name, f"{info.file_size / 1048576:.1f} MB, over the "
                                      f"{max_file_bytes // 1048576} MB upload limit"))
                continue
            target = dest / f"{n:05d}{PurePosixPath(name).suffix.lower()}"
            written = 0
            with zf.open(info) as src, target.open("wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_file_bytes or written > info.file_size + 1024:
                        raise DocumentError(f"{display}: {name} unpacks to more than it "
                                            "declares; the archive is refused.")
                    out.write(chunk)
            members.append(Member(name=name, path=target, file_type=ftype))
        return members, skipped, refused
