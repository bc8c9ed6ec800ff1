import json

from lathe.pii import find_pii
from pipelines.curation.demo_corpus import build


def test_demo_corpus_plants_what_its_manifest_says(tmp_path):
    source = tmp_path / "src"
    (source / "library").mkdir(parents=True)
    for i in range(30):
        words = " ".join(f"word{i}x{j}" for j in range(400))
        (source / "library" / f"mod{i}.rst.txt").write_text(f"Module {i}\n\n{words}\n")
    manifest = build(source, tmp_path / "out", copies=3, near=3, pii=2)
    docs = tmp_path / "out" / "docs"
    assert manifest["pages"] == 30
    assert json.loads((tmp_path / "out" / "injected.json").read_text()) == manifest
    for copy in manifest["exact_copies"]:
        assert (docs / copy["id"]).read_text() == (source / copy["of"]).read_text()
    for near in manifest["near_duplicates"]:
        edited, original = (docs / near["id"]).read_text().split(" "), (source / near["of"]).read_text().split(" ")
        assert len(edited) == len(original) and edited != original
    for page in manifest["pii"]:
        assert find_pii((docs / page["id"]).read_text()), page["id"]
