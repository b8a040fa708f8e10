"""The README's table of Milvus lines x features x how tested is rendered from the code's own
tables (mbackup_dev/lines_table.py): the README's copy is current, and each cell follows the
adapters, the version gates and FEATURES_SINCE, so a change there changes the table."""

from __future__ import annotations

import pytest

from mbackup_dev import lines_table, readme
from milvus_backup.milvus import versions
from milvus_backup.milvus.adapters.base import HowTested
from milvus_backup.milvus.adapters.v2_4_plus import Milvus25Adapter, Milvus30Adapter
from milvus_backup.milvus.versions import Feature


def table() -> dict[str, dict[str, str]]:
    """The rendered table as {row label: {line: cell}}."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines_table.render().splitlines()[1:-1]]
    header, _rule, *body = rows
    lines = [h.removeprefix("Milvus ") for h in header[1:]]
    return {label: dict(zip(lines, cells, strict=True)) for label, *cells in body}


def test_readme_lines_table_is_current():
    """Edit an adapter, versions.py or FEATURES_SINCE, then run scripts/readme."""
    text = readme.README.read_text()
    start, end = text.find(lines_table.BEGIN), text.find(lines_table.END)
    assert 0 <= start < end, "the README has lost its lines table markers"
    assert text[start:end + len(lines_table.END)] == lines_table.render(), (
        "README.md: the lines table is stale; run scripts/readme")


def test_every_built_in_line_has_a_column_saying_how_it_is_tested():
    got = table()
    assert got["How tested"] == {"2.3": "**live**", "2.4": "**contract**", "2.5": "**contract**",
                                 "2.6": "**contract**", "3.0": "**contract**"}
    assert got["Backup"]["2.3"] == "yes (live)" and got["Backup"]["3.0"] == "yes (contract)"
    assert got["Restore into it"]["2.3"] == "yes (live): backups of 2.3 to 2.5"
    assert got["Restore into it"]["2.6"] == "yes (contract): backups of 2.3 to 2.6"
    assert got["Schema: clustering keys"]["2.3"] == "the line lacks it: restore refuses it"


@pytest.mark.parametrize("change,row,line,cell", [
    # How an adapter is tested, whether it restores: the adapter's own attributes.
    (lambda mp: mp.setattr(Milvus30Adapter, "tested", HowTested("live", "against Milvus 3.0.1")),
     "Backup", "3.0", "yes (live)"),
    (lambda mp: mp.setattr(Milvus25Adapter, "restores", False),
     "Restore into it", "2.5", "not yet: refused before anything is created"),
    # A version gate moved in versions.SINCE.
    (lambda mp: mp.setitem(versions.SINCE, Feature.FLUSH_ALL, (2, 5, 3)), "Flush", "2.5", "FlushAll from 2.5.3 (contract)"),
    (lambda mp: mp.setitem(versions.SINCE, Feature.RBAC, (2, 5, 0)), "BackupRBAC and RestoreRBAC", "2.4", "no"),
])
def test_each_cell_follows_the_code(monkeypatch, change, row, line, cell):
    before = table()[row][line]
    change(monkeypatch)
    assert (before != cell, table()[row][line]) == (True, cell)


def test_a_stale_table_is_caught():
    text = readme.README.read_text()
    stale = text.replace("| How tested | **live** |", "| How tested | **contract** |")
    assert stale != text and readme.with_table(stale) == text
    assert readme.main(["--check"]) == 0
