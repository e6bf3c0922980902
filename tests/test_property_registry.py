"""The property registry (reference/regression/properties.py) is the only list of regression properties: the
property table of docs/REGRESSION.md lists exactly its contrastive properties, the non-contrastive section names
its non-contrastive ones, and every record is complete."""
import re
from pathlib import Path

from dualnet_ssl.regression import properties

DOCS = Path(__file__).resolve().parents[1] / "docs" / "REGRESSION.md"


def _section(title: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _property_table() -> list[str]:
    """The names in the first column of the table headed '| property | what is checked |'."""
    lines = _section("The properties").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| property | what is checked"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(re.match(r"\| `(\w+)` \|", line).group(1))
    return rows


def test_docs_property_table_lists_exactly_the_registered_properties():
    rows = _property_table()
    assert len(rows) == len(set(rows)), f"a property listed twice in the docs table: {rows}"
    table = set(rows)
    registered = {p.name for p in properties.REGISTRY if p.needs != properties.NON_CONTRASTIVE}
    assert table == registered, (f"in the docs table only: {sorted(table - registered)}; registered only: "
                                 f"{sorted(registered - table)}")


def test_docs_name_every_non_contrastive_property():
    section = _section("Non-contrastive losses")
    missing = [p.name for p in properties.REGISTRY
               if p.needs == properties.NON_CONTRASTIVE and f"`{p.name}`" not in section]
    assert not missing, f"non-contrastive properties not described in docs/REGRESSION.md: {missing}"


def test_every_record_is_complete_and_unique():
    names = [p.name for p in properties.REGISTRY]
    assert len(names) == len(set(names)), f"a property registered twice: {names}"
    kinds = {properties.LOSS, properties.NETWORK, properties.LOSS_ON_NETWORK, properties.LOSS_DISTRIBUTED,
             properties.NON_CONTRASTIVE}
    for p in properties.REGISTRY:
        assert p.needs in kinds and callable(p.check) and p.summary, p
        assert p.sizes in (properties.EVERY_SIZE, properties.OWN_SIZES), p


def test_an_unknown_property_is_a_clear_error():
    import pytest

    from dualnet_ssl.errors import BadInput
    from dualnet_ssl.regression import builtin_loss, reference_nt_xent
    with pytest.raises(BadInput, match="unknown loss property 'theorem_class'"):
        properties.check_loss(builtin_loss(reference_nt_xent), "theorem_class", 0)
