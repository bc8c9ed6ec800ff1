from pipelines.curation.sources import file_record, html_to_text, jsonl_record


def test_html_loses_tags_scripts_and_navigation():
    page = (
        "<html><head><style>p{}</style><script>var x;</script></head><body>"
        "<div role='navigation'>index | modules | next</div><h1>Title</h1><p>Body &amp; text</p>"
        "<div class='footer'>© 2024</div></body></html>"
    )
    text = html_to_text(page)
    assert "Title" in text and "Body & text" in text
    assert "var x" not in text and "modules" not in text and "2024" not in text


def test_file_records_reject_bad_encoding_and_empty_files():
    assert file_record("/d/a.txt", "héllo".encode(), "/d") == {
        "id": "a.txt",
        "text": "héllo",
        "source": "a.txt",
        "reason": None,
    }
    assert file_record("/d/b.txt", b"\xff\xfe\xfa\x00\xd8", "/d")["reason"] is not None
    assert file_record("/d/c.txt", b"\xc3\x28 invalid", "/d")["reason"] == "not valid UTF-8 or UTF-16 text"
    assert file_record("/d/e.md", b"   \n", "/d")["reason"] == "empty document"
    assert file_record("/d/u16.txt", "hi".encode("utf-16"), "/d")["text"] == "hi"


def test_jsonl_records_keep_ids_and_name_problems():
    assert jsonl_record('{"id": "x1", "text": "hello"}', 1, "f.jsonl", "text", "id")["id"] == "x1"
    assert jsonl_record("{broken", 3, "f.jsonl", "text", "id") == {
        "id": "f.jsonl:3",
        "text": "",
        "source": "f.jsonl",
        "reason": "line is not valid JSON",
    }
    assert jsonl_record('{"id": 1, "body": "x"}', 1, "f.jsonl", "text", "id")["reason"] == "no string field 'text'"
