"""Reading documents into sections: every format keeps its text and its structure."""

from __future__ import annotations

import json

import docx
import pytest

from onthejob.errors import RagError
from onthejob.rag.ingest import find_files, read_file
from tests.rag.helpers import make_pdf


def test_txt_is_one_section(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("First paragraph.\n\nSecond paragraph.\n")
    [s] = read_file(f)
    assert s.text.strip() == "First paragraph.\n\nSecond paragraph."
    assert s.page is None and s.heading is None


def test_markdown_headings_make_a_path_and_code_fences_do_not(tmp_path):
    f = tmp_path / "a.md"
    f.write_text("Intro text.\n\n# Leave\n\n## Annual leave\n\n18 days.\n\n```\n# not a heading\n```\n\n## Sick leave\n\n14 days.\n\n# Pay\n\nMonthly.\n")
    got = [(s.heading, s.text) for s in read_file(f)]
    assert got == [
        (None, "Intro text."),
        ("Leave > Annual leave", "18 days.\n\n```\n# not a heading\n```"),
        ("Leave > Sick leave", "14 days."),
        ("Pay", "Monthly."),
    ]


def test_html_keeps_headings_and_drops_script_and_style(tmp_path):
    f = tmp_path / "a.html"
    f.write_text(
        "<html><head><style>p { color: red }</style><script>var secret = 1;</script></head><body>"
        "<h1>Handbook</h1><p>Welcome &amp; hello.</p><h2>Leave</h2><p>Staff get <b>18</b> days.</p>"
        "<p>Ask HR.</p></body></html>"
    )
    sections = read_file(f)
    assert [s.heading for s in sections] == ["Handbook", "Handbook > Leave"]
    assert sections[0].text == "Welcome & hello."
    assert "Staff get 18 days." in sections[1].text and "Ask HR." in sections[1].text
    assert all("secret" not in s.text and "color" not in s.text for s in sections)


def test_pdf_gives_one_section_per_page_with_its_number(tmp_path):
    f = tmp_path / "a.pdf"
    make_pdf(f, [["Annual leave is 18 days."], [], ["Sick leave is 14 days."]])
    sections = read_file(f)
    assert [s.page for s in sections] == [1, 3]  # the empty page is dropped
    assert "Annual leave is 18 days." in sections[0].text
    assert "Sick leave is 14 days." in sections[1].text


def test_docx_headings_from_styles_and_tables_in_place(tmp_path):
    d = docx.Document()
    d.add_heading("Handbook", level=0)
    d.add_paragraph("Welcome.")
    d.add_heading("Leave", level=1)
    d.add_paragraph("Staff get 18 days.")
    table = d.add_table(rows=2, cols=2)
    for r, (a, b) in enumerate([("Grade", "Days"), ("N1", "18")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    d.add_heading("Pay", level=1)
    d.add_paragraph("Monthly.")
    d.save(tmp_path / "a.docx")
    sections = read_file(tmp_path / "a.docx")
    assert [s.heading for s in sections] == ["Handbook", "Handbook > Leave", "Handbook > Pay"]
    assert sections[1].text.splitlines()[0] == "Staff get 18 days."
    assert "Grade | Days" in sections[1].text and "N1 | 18" in sections[1].text


def test_csv_and_jsonl_rows_are_sections(tmp_path):
    (tmp_path / "a.csv").write_text("q,a\nHow long?,18 days\nWho?,HR\n")
    rows = read_file(tmp_path / "a.csv")
    assert [(s.heading, s.text) for s in rows] == [("row 2", "q: How long?\na: 18 days"), ("row 3", "q: Who?\na: HR")]
    assert [s.text for s in read_file(tmp_path / "a.csv", text_key="a")] == ["18 days", "HR"]

    (tmp_path / "b.jsonl").write_text(json.dumps({"title": "Leave", "body": "18 days"}) + "\n\n" + json.dumps({"title": "Pay", "body": "Monthly"}) + "\n")
    rows = read_file(tmp_path / "b.jsonl")
    assert [(s.heading, s.text) for s in rows] == [("line 1", "title: Leave\nbody: 18 days"), ("line 3", "title: Pay\nbody: Monthly")]
    with pytest.raises(RagError, match=r"b\.jsonl \(line 1\): no column or key 'text'"):
        read_file(tmp_path / "b.jsonl", text_key="text")


def test_jsonl_strings_may_hold_a_line_separator(tmp_path):
    # U+2028 is legal inside a JSON string; str.splitlines() would cut the record in two there.
    record = {"title": "Leave\u2028policy", "body": "18 days"}
    (tmp_path / "c.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert "\u2028" in (tmp_path / "c.jsonl").read_text(encoding="utf-8")
    [section] = read_file(tmp_path / "c.jsonl")
    assert (section.heading, section.text) == ("line 1", "title: Leave\u2028policy\nbody: 18 days")


def test_folders_are_walked_for_supported_files(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for name in ("a.txt", "sub/b.md", "sub/deeper/c.html", "sub/skip.png", ".git/d.txt"):
        (tmp_path / name).write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_files([tmp_path])]
    assert found == ["a.txt", "sub/b.md", "sub/deeper/c.html"]
    with pytest.raises(RagError, match="unsupported file type .png"):
        find_files([tmp_path / "sub" / "skip.png"])
    with pytest.raises(RagError, match="no such file"):
        find_files([tmp_path / "missing"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.pdf", b"%PDF-1.4 this is not a pdf", r"broken\.pdf: a damaged or truncated PDF \(no %%EOF at its end\): PdfStreamError"),
        ("broken.docx", b"not a zip file", r"broken\.docx: cannot read it as \.docx"),
        ("latin.txt", "caf\xe9".encode("latin-1"), r"latin\.txt: not UTF-8"),
        ("bad.jsonl", b'{"a": 1}\n{oops\n', r"bad\.jsonl:2: not valid JSON"),
    ],
)
def test_unreadable_files_name_the_file_and_the_fix(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(RagError, match=message) as info:
        read_file(tmp_path / name)
    assert info.value.fix


def test_an_encrypted_pdf_says_so_and_how_to_decrypt_it(tmp_path):
    import pypdf

    make_pdf(tmp_path / "plain.pdf", [["Annual leave is 18 days."]])
    writer = pypdf.PdfWriter(clone_from=str(tmp_path / "plain.pdf"))
    writer.encrypt("secret")
    writer.write(tmp_path / "locked.pdf")
    with pytest.raises(RagError, match=r"locked\.pdf: the PDF is encrypted") as info:
        read_file(tmp_path / "locked.pdf")
    assert "FileNotDecryptedError" not in str(info.value)
    assert "qpdf --decrypt" in info.value.fix
    writer = pypdf.PdfWriter(clone_from=str(tmp_path / "plain.pdf"))
    writer.encrypt(user_password="", owner_password="secret")  # restricts copying only: opens without one
    writer.write(tmp_path / "restricted.pdf")
    assert "Annual leave is 18 days." in read_file(tmp_path / "restricted.pdf")[0].text


def zip_bomb_docx(path, megabytes: int) -> None:
    """A real .docx whose document.xml repeats one paragraph to ``megabytes`` MB: a few KB on disk."""
    import zipfile

    d = docx.Document()
    d.add_paragraph("Staff get 18 days.")
    d.save(path)
    with zipfile.ZipFile(path) as z:
        parts = {name: z.read(name) for name in z.namelist()}
    para = b"<w:p><w:r><w:t>" + b"lorem ipsum dolor sit amet " * 40 + b"</w:t></w:r></w:p>"
    body = para * (megabytes * 2**20 // len(para) + 1)
    parts["word/document.xml"] = parts["word/document.xml"].replace(b"<w:body>", b"<w:body>" + body, 1)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)


def test_a_docx_that_expands_past_the_limit_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    zip_bomb_docx(tmp_path / "bomb.docx", megabytes=3)
    assert (tmp_path / "bomb.docx").stat().st_size < 100_000
    monkeypatch.setattr("onthejob.rag.ingest.MAX_EXPANDED_BYTES", 2**20)
    monkeypatch.setattr("docx.Document", lambda *a, **k: pytest.fail("the docx was parsed"))
    with pytest.raises(RagError, match=r"bomb\.docx: expands to 3\.\d MB of XML, over the 1\.0 MB limit") as info:
        read_file(tmp_path / "bomb.docx")
    assert "ONTHEJOB_RAG_MAX_MB" in info.value.fix
    monkeypatch.undo()
    monkeypatch.setattr("onthejob.rag.ingest.MAX_EXPANDED_BYTES", 2**20)
    monkeypatch.setenv("ONTHEJOB_RAG_MAX_MB", "4")  # the way to raise it
    [section] = read_file(tmp_path / "bomb.docx")
    assert section.text.startswith("lorem ipsum")
    monkeypatch.setenv("ONTHEJOB_RAG_MAX_MB", "lots")
    with pytest.raises(RagError, match="ONTHEJOB_RAG_MAX_MB='lots' is not a number"):
        read_file(tmp_path / "bomb.docx")


def test_pdf_text_past_the_limit_is_refused(tmp_path, monkeypatch):
    make_pdf(tmp_path / "long.pdf", [["Annual leave is 18 days. " * 20] for _ in range(4)])
    monkeypatch.setattr("onthejob.rag.ingest.MAX_EXPANDED_BYTES", 1200)
    with pytest.raises(RagError, match=r"long\.pdf: its text passes the 1\.2 KB limit at page 3 of 4") as info:
        read_file(tmp_path / "long.pdf")
    assert "ONTHEJOB_RAG_MAX_MB" in info.value.fix
    monkeypatch.setattr("onthejob.rag.ingest.MAX_EXPANDED_BYTES", 10_000)
    assert len(read_file(tmp_path / "long.pdf")) == 4
