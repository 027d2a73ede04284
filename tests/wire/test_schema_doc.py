"""The docs generator: docs/protocol.md carries the schemas of every wire model, kept current."""

from __future__ import annotations

from pathlib import Path

from gateway.wire import EVENT_TYPES
from gateway.wire.schema_doc import (
    BEGIN_MARKER,
    END_MARKER,
    documented_examples,
    main,
    protocol_schemas_markdown,
)

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_protocol_doc_carries_the_generated_schemas() -> None:
    document = PROTOCOL_DOC.read_text(encoding="utf-8")
    start = document.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    block = document[start : document.index(END_MARKER)]
    assert block.strip() == protocol_schemas_markdown().strip(), (
        "docs/protocol.md is stale: run `python -m gateway.wire.schema_doc`"
    )
    assert main(["--check"]) == 0


def test_generator_rewrites_a_stale_block_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "protocol.md"
    doc.write_text(f"# Protocol\n\nprose\n\n{BEGIN_MARKER}\nold text\n{END_MARKER}\n", "utf-8")
    assert main(["--check", "--doc", str(doc)]) == 1
    assert "old text" in doc.read_text(encoding="utf-8")  # --check never writes
    assert main(["--doc", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Protocol\n\nprose\n\n" + BEGIN_MARKER)
    assert "old text" not in text
    assert protocol_schemas_markdown() in text
    assert text.endswith(END_MARKER + "\n")
    assert main(["--check", "--doc", str(doc)]) == 0


def test_every_message_and_event_type_is_documented() -> None:
    text = protocol_schemas_markdown()
    for name in EVENT_TYPES:
        assert f"### Event `{name}`" in text
    for topic in ("`state`", "`up/{stream}`", "`down/ack`", "`up/health`"):
        assert f"### {topic}" in text
    assert text.count("```json") == 2 * len(documented_examples())  # schema + example each
