"""Tests of tests/mutants.py, the mutation check: every planted bug still applies to the current source,
exactly once, and (slow) the tests fail on every mutant."""

import mutants
import pytest

ROOT = mutants.ROOT


@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.name)
def test_every_mutant_applies_exactly_once_to_the_current_source(mutant):
    source = (ROOT / mutant.path).read_text()
    line = mutants.locate(mutant, source)
    mutated = mutants.apply(mutant, source)
    assert mutated != source and mutated.count(mutant.new) == source.count(mutant.new) + 1
    # the line named in the table is the one that changes
    assert source.splitlines()[line - 1] != mutated.splitlines()[line - 1]
    assert source.splitlines()[:line - 1] == mutated.splitlines()[:line - 1]


def test_a_mutant_that_no_longer_matches_exactly_once_is_refused():
    m = mutants.Mutant("demo", "x.py", "a < b", "a <= b", "demo")
    assert mutants.locate(m, "x = 1\nif a < b:\n") == 2
    for source, count in (("if a <= c:\n", 0), ("a < b\na < b\n", 2)):
        with pytest.raises(ValueError, match=f"mutant 'demo' must match x.py exactly once, got {count} matches"):
            mutants.apply(m, source)


def test_the_mutant_names_are_unique():
    names = [m.name for m in mutants.MUTANTS]
    assert len(names) == len(set(names))


def test_the_scratch_copy_holds_the_working_trees_files(tmp_path):
    files = mutants.repository_files()
    assert "numpy_retinanet/detection/matcher.py" in files and "tests/mutants.py" in files
    assert not any(f.startswith(".git/") or "__pycache__" in f for f in files)
    mutants.scratch_copy(tmp_path)
    for name in ("numpy_retinanet/nn/losses.py", "pyproject.toml", "tests/conftest.py"):
        assert (tmp_path / name).read_bytes() == (ROOT / name).read_bytes()


@pytest.mark.slow
def test_the_tests_fail_on_every_mutant(capsys):
    assert mutants.main([]) == 0, capsys.readouterr().out
