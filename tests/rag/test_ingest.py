"""Reading documents into sections: every format keeps its text and its structure."""

from __future__ import annotations

import json

import docx
import pytest

from onthejob.errors import RagError
from onthejob.rag.ingest import find_files, read_file


def make_pdf(path, pages: list[list[str]]) -> None:
    """A minimal PDF with a real text layer: one list of lines per page ("" = blank line)."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode(),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, lines in enumerate(pages):
        stream = "BT /F1 11 Tf 72 740 Td 14 TL " + " ".join(f"({esc(line)}) Tj T*" for line in lines) + " ET"
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                    f"/Contents {5 + 2 * i} 0 R >>".encode())
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream".encode())
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)


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
        ("broken.pdf", b"%PDF-1.4 this is not a pdf", r"broken\.pdf: cannot read it as \.pdf"),
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
