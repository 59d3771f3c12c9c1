"""Read documents into sections: text with the page and heading path it came from.

    from onthejob.rag.ingest import find_files, read_file
    for path in find_files(["docs/"]):
        sections = read_file(path)        # [Section(text, page, heading), ...]

Supported: .txt, .md (``#`` headings), .html/.htm (h1-h6 headings; script and style dropped),
.pdf (text layer, one section per page; headings from the PDF's bookmarks when it has them),
.docx (headings from "Heading N"/"Title" paragraph styles; tables kept in place), and .csv /
.jsonl, where each row is one section: the column/key ``text_key`` when given, else every column
as ``key: value`` lines. Readers register in ``READERS`` by extension.

A document that expands past ``MAX_EXPANDED_BYTES`` as it is read (a .docx's XML, a PDF's text) is
refused before it costs minutes and gigabytes; ``ONTHEJOB_RAG_MAX_MB=256 ojt rag index ...``
raises the limit. A PDF library's warnings about quirks it repairs show only with ``ojt --debug``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from onthejob.console import human_bytes
from onthejob.data.readers import jsonl_records
from onthejob.data.schema import Problem
from onthejob.errors import RagError

HEADING_SEP = " > "

# A document can expand far past its size on disk as it is read: a .docx is a zip (a 316 KB one
# held 96 MB of XML, which took over 300 s and 1.5 GB to read) and a PDF's streams are compressed.
# Past this many bytes of a .docx's XML, or of a PDF's extracted text, the file is refused; a
# .docx's parts all together (images too, which python-docx reads into memory) may reach 8 times it.
MAX_EXPANDED_BYTES = 32 * 2**20  # ~20 s and ~350 MB for a .docx of that much XML
LIMIT_ENV = "ONTHEJOB_RAG_MAX_MB"  # megabytes, replacing MAX_EXPANDED_BYTES where set


@dataclass
class Section:
    """A stretch of a document under one heading on one page; chunks never cross sections."""

    text: str
    page: int | None = None  # 1-based page (PDF), None where the format has no pages
    heading: str | None = None  # heading path, e.g. "Leave > Annual leave"; "row 3" for tables


Reader = Callable[..., list[Section]]
READERS: dict[str, Reader] = {}  # ".pdf" -> reader(path, text_key=None) -> sections


def reader(*extensions: str):
    def register(fn: Reader) -> Reader:
        for ext in extensions:
            READERS[ext] = fn
        return fn

    return register


def find_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Supported files among ``paths``, directories walked recursively; sorted, resolved, unique."""
    found: set[Path] = set()
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            found.update(
                f.resolve() for f in path.rglob("*")
                if f.is_file() and f.suffix.lower() in READERS and not _hidden(f.relative_to(path))
            )
        elif path.is_file():
            if path.suffix.lower() not in READERS:
                raise RagError(f"{path}: unsupported file type {path.suffix or '(none)'}", fix=f"use one of {_supported()}")
            found.add(path.resolve())
        else:
            raise RagError(f"{path}: no such file or folder", fix="check the path")
    return sorted(found)


def read_file(path: str | os.PathLike, *, text_key: str | None = None) -> list[Section]:
    """The sections of one file, empty ones dropped; RagError when it cannot be read."""
    path = Path(path)
    fn = READERS.get(path.suffix.lower())
    if fn is None:
        raise RagError(f"{path}: unsupported file type {path.suffix or '(none)'}", fix=f"use one of {_supported()}")
    try:
        sections = fn(path, text_key=text_key)
    except RagError:
        raise
    except Exception as e:  # noqa: BLE001 - parsers raise anything on a broken file
        raise RagError(
            f"{path}: cannot read it as {path.suffix.lower()}: {type(e).__name__}: {e}",
            fix="check that the file opens in its usual program, or remove it from the paths",
        ) from e
    return [s for s in sections if s.text.strip()]


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _supported() -> str:
    return ", ".join(sorted(READERS))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise RagError(f"{path}: not UTF-8 text ({e})", fix="save the file as UTF-8") from e


# ---------------------------------------------------------------------------------- readers


@reader(".txt")
def read_txt(path: Path, **_) -> list[Section]:
    return [Section(_read_text(path))]


_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@reader(".md", ".markdown")
def read_md(path: Path, **_) -> list[Section]:
    out = _Outline()
    in_fence = False
    for line in _read_text(path).splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        m = None if in_fence else _ATX.match(line)
        if m:
            out.heading(len(m.group(1)), m.group(2))
        else:
            out.text(line + "\n")
    return out.sections()


@reader(".html", ".htm")
def read_html(path: Path, **_) -> list[Section]:
    parser = _HtmlSections()
    parser.feed(_read_text(path))
    parser.close()
    return parser.outline.sections()


@reader(".pdf")
def read_pdf(path: Path, **_) -> list[Section]:
    with quiet_library_logs("pypdf"):
        try:
            return _pdf_sections(path, max_expanded_bytes())
        except RagError:
            raise
        except Exception as e:  # noqa: BLE001 - pypdf raises anything on a broken file
            raise RagError(f"{path}: {_pdf_damage(path)}: {type(e).__name__}: {e}",
                           fix="check that it opens in a PDF viewer and save a new copy, or remove it from the paths") from e


@reader(".docx")
def read_docx(path: Path, **_) -> list[Section]:
    import docx
    from docx.table import Table

    _check_unzipped_size(path, max_expanded_bytes())
    document = docx.Document(str(path))
    style_name = _docx_style_names(document)
    out = _Outline()
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                out.text(" | ".join(_unique(c.text.strip() for c in row.cells)) + "\n")
            out.text("\n")
            continue
        level = _docx_level(style_name(block))
        if level:
            out.heading(level, block.text)
        else:
            out.text(block.text + "\n\n")
    return out.sections()


@reader(".csv")
def read_csv(path: Path, *, text_key: str | None = None, **_) -> list[Section]:
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    # row numbers count the header line, so "row 2" is the second line of the file
    return [_row_section(row, text_key, f"row {i}", path) for i, row in enumerate(rows, start=2)]


@reader(".jsonl")
def read_jsonl(path: Path, *, text_key: str | None = None, **_) -> list[Section]:
    sections = []
    for i, record in jsonl_records(_read_text(path), str(path)):
        if isinstance(record, Problem):
            raise RagError(f"{path}:{i}: not valid JSON ({record.message.removeprefix('invalid JSON: ')})",
                           fix="one JSON object per line")
        if not isinstance(record, dict):
            raise RagError(f"{path}:{i}: a JSON {type(record).__name__}, not an object", fix="one JSON object per line")
        sections.append(_row_section(record, text_key, f"line {i}", path))
    return sections


# ---------------------------------------------------------------------------------- limits


def max_expanded_bytes() -> int:
    """``MAX_EXPANDED_BYTES``, or $ONTHEJOB_RAG_MAX_MB megabytes where it is set."""
    raw = os.environ.get(LIMIT_ENV)
    if raw is None:
        return MAX_EXPANDED_BYTES
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = 0
    if not megabytes > 0:
        raise RagError(f"{LIMIT_ENV}={raw!r} is not a number of megabytes",
                       fix=f"set it to the most a document may expand to, e.g. 256, or unset it for {MAX_EXPANDED_BYTES // 2**20}")
    return int(megabytes * 2**20)


def _too_big(path: Path, what: str) -> RagError:
    return RagError(f"{path}: {what}", fix=f"split the document, or raise the limit: {LIMIT_ENV}=MEGABYTES ojt rag index ...")


def _check_unzipped_size(path: Path, limit: int) -> None:
    """Refuse a zipped document whose parts would expand past the limit, before any is read. The
    zip's directory gives their sizes, and Python's zipfile never reads an entry past its size."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    xml = sum(i.file_size for i in infos if i.filename.endswith((".xml", ".rels")))
    total = sum(i.file_size for i in infos)
    if xml > limit:
        raise _too_big(path, f"expands to {human_bytes(xml)} of XML, over the {human_bytes(limit)} limit")
    if total > 8 * limit:
        raise _too_big(path, f"expands to {human_bytes(total)}, over the {human_bytes(8 * limit)} limit for all its parts")


@contextmanager
def quiet_library_logs(name: str) -> Iterator[None]:
    """Hold back library ``name``'s warnings (pypdf warns about every quirk of a file it repairs)
    unless onthejob logs at DEBUG (``ojt --debug``)."""
    logger = logging.getLogger(name)
    if logging.getLogger("onthejob").isEnabledFor(logging.DEBUG):
        yield
        return
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------------- helpers


class _Outline:
    """Collects text under a stack of headings; each heading starts a new section."""

    def __init__(self):
        self.stack: list[tuple[int, str]] = []
        self.parts: list[str] = []
        self.done: list[Section] = []

    def heading(self, level: int, title: str) -> None:
        self._flush()
        title = " ".join(title.split())
        self.stack = [(lv, t) for lv, t in self.stack if lv < level]
        if title:
            self.stack.append((level, title))

    def text(self, text: str) -> None:
        self.parts.append(text)

    def sections(self) -> list[Section]:
        self._flush()
        return self.done

    def _flush(self) -> None:
        text = "".join(self.parts).strip()
        self.parts = []
        if text:
            heading = HEADING_SEP.join(t for _, t in self.stack) or None
            self.done.append(Section(text, heading=heading))


_BLOCKS = {"p", "div", "li", "tr", "br", "section", "article", "blockquote", "pre", "table", "ul", "ol", "dd", "dt"}


class _HtmlSections(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.outline = _Outline()
        self.skip = 0  # inside script/style
        self.heading_level = 0
        self.heading_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "noscript", "template"):
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.heading_level, self.heading_text = int(tag[1]), []
        elif tag in _BLOCKS:
            self.outline.text("\n\n" if tag in ("p", "div", "section", "article", "table") else "\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "noscript", "template"):
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self.heading_level:
            self.outline.heading(self.heading_level, "".join(self.heading_text))
            self.heading_level = 0
        elif tag in ("td", "th"):
            self.outline.text(" | ")

    def handle_data(self, data):
        if self.skip:
            return
        if self.heading_level:
            self.heading_text.append(data)
        else:
            self.outline.text(re.sub(r"[ \t\r\n]+", " ", data))


def _pdf_sections(path: Path, limit: int) -> list[Section]:
    import pypdf

    doc = pypdf.PdfReader(str(path))
    if doc.is_encrypted:
        _decrypt(doc, path)
    headings = _pdf_headings(doc)
    current, size, sections = None, 0, []
    for i, page in enumerate(doc.pages):
        current = headings.get(i, current)
        text = page.extract_text() or ""
        size += len(text.encode("utf-8"))
        if size > limit:
            raise _too_big(path, f"its text passes the {human_bytes(limit)} limit at page {i + 1} of {len(doc.pages)}")
        sections.append(Section(text, page=i + 1, heading=current))
    return sections


def _decrypt(doc, path: Path) -> None:
    """Open an encrypted PDF whose user password is empty (it only restricts printing or copying,
    and viewers open it without asking); refuse one that needs a password."""
    import pypdf

    fix = "decrypt it first, e.g. qpdf --decrypt --password=PASSWORD in.pdf out.pdf, and index the copy"
    try:
        opened = doc.decrypt("")  # returns NOT_DECRYPTED, not raising, when "" is not the password
    except Exception as e:  # noqa: BLE001 - e.g. AES without the cryptography package
        raise RagError(f"{path}: the PDF is encrypted and pypdf cannot decrypt it ({type(e).__name__}: {e})",
                       fix=f"{fix} (or pip install cryptography)") from e
    if opened == pypdf.PasswordType.NOT_DECRYPTED:
        raise RagError(f"{path}: the PDF is encrypted with a password", fix=fix)


def _pdf_damage(path: Path) -> str:
    """What a PDF that pypdf cannot read looks like from its first and last bytes."""
    with open(path, "rb") as f:
        head = f.read(1024)
        f.seek(max(0, path.stat().st_size - 1024))
        tail = f.read()
    if b"%PDF-" not in head:
        return "not a PDF (it does not start with %PDF-)"
    if b"%%EOF" not in tail:
        return "a damaged or truncated PDF (no %%EOF at its end)"
    return "a damaged PDF"


def _pdf_headings(doc) -> dict[int, str]:
    """Page index -> heading path of the last bookmark starting on that page ({} without bookmarks)."""
    out: dict[int, str] = {}

    def walk(items, trail):
        last = None
        for item in items:
            if isinstance(item, list):
                if last is not None:
                    walk(item, trail + [last])
                continue
            last = str(getattr(item, "title", "") or "").strip()
            try:
                page = doc.get_destination_page_number(item)
            except Exception:  # noqa: BLE001 - a broken bookmark is no reason to fail the file
                continue
            if page is not None and page >= 0 and last:
                out[page] = HEADING_SEP.join(trail + [last])

    try:
        walk(doc.outline, [])
    except Exception:  # noqa: BLE001
        return {}
    return out


def _docx_style_names(document) -> Callable[[object], str]:
    """paragraph -> its style's name. Paragraph.style looks the default style up anew for every
    paragraph without a style of its own (~2 ms each: minutes for a long document), so the names
    are looked up once here, by the style id the paragraph's XML holds."""
    from docx.enum.style import WD_STYLE_TYPE

    styles = document.styles
    names = {s.style_id: s.name for s in styles if s.type == WD_STYLE_TYPE.PARAGRAPH}
    default = styles.default(WD_STYLE_TYPE.PARAGRAPH)
    default_name = default.name if default is not None else ""
    return lambda paragraph: names.get(paragraph._p.style, default_name) or ""


def _docx_level(style: str) -> int:
    if style == "Title":
        return 1
    m = re.fullmatch(r"Heading (\d)", style)
    return int(m.group(1)) + 1 if m else 0  # Title is level 1, so Heading 1 nests under it


def _unique(cells: Iterable[str]) -> list[str]:
    """Merged cells repeat their text once per grid cell; keep it once."""
    out: list[str] = []
    for c in cells:
        if not out or out[-1] != c:
            out.append(c)
    return out


def _row_section(row: dict, text_key: str | None, where: str, path: Path) -> Section:
    if text_key is not None:
        if text_key not in row:
            raise RagError(
                f"{path} ({where}): no column or key {text_key!r}",
                fix=f"use one of: {', '.join(map(str, row))}, or leave the text key unset to use every column",
            )
        value = row[text_key]
        return Section(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False), heading=where)
    lines = [f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in row.items() if v not in (None, "")]
    return Section("\n".join(lines), heading=where)
