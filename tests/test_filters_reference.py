"""The datatrove constants the fast rules read from datatrove's source equal the imported ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

from transforms.filter.reference import ReferenceConstantError, reference_constants

C4 = "datatrove.pipeline.filters.c4_filters"


def test_constants_read_from_source_equal_the_imported_ones() -> None:
    from datatrove.pipeline.filters import c4_filters

    names = ("CITATION_REGEX", "ELLIPSIS", "END_PUNCTUATION", "POLICY_SUBSTRINGS", "_BADWORDS_ALLOWLIST")
    for name, value in zip(names, reference_constants(C4, *names)):
        imported = getattr(c4_filters, name)
        if name == "CITATION_REGEX":
            assert (value.pattern, value.flags) == (imported.pattern, imported.flags)
        else:
            assert value == imported, name


def test_missing_or_computed_constants_are_named() -> None:
    with pytest.raises(ReferenceConstantError, match="assigns no NOT_THERE"):
        reference_constants(C4, "ELLIPSIS", "NOT_THERE")
    with pytest.raises(ReferenceConstantError, match="is not installed"):
        reference_constants("no_such_package_here.module", "X")


def test_building_the_c4_rules_does_not_import_datatrove_io() -> None:
    code = ("import sys\n"
            "from transforms.filter.stages.c4_quality import C4Quality\n"
            "from transforms.filter.words import WordSplitter\n"
            "C4Quality({}, WordSplitter('eng'))\n"
            "print('datatrove.io' in sys.modules, 'huggingface_hub' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
