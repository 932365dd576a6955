"""Tests of tests/mutants.py, the mutation check: every planted bug still applies to the current source,
exactly once, and (slow) the tests fail on every mutant."""

import subprocess

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


def test_the_scratch_copy_holds_the_working_tree_as_git_sees_it(tmp_path):
    # a repository of its own, so that the test also runs inside a scratch copy (which has no .git)
    repo, copy = tmp_path / "repo", tmp_path / "copy"
    (repo / "pkg").mkdir(parents=True)
    for name, text in (("pkg/a.py", "committed\n"), ("gone.py", "deleted\n"), (".gitignore", "ignored.txt\n")):
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "pkg/a.py", "gone.py", ".gitignore"], check=True)
    (repo / "gone.py").unlink()  # tracked, deleted in the working tree
    (repo / "pkg/a.py").write_text("edited\n")  # tracked, changed
    (repo / "new.py").write_text("untracked\n")
    (repo / "ignored.txt").write_text("ignored\n")
    assert sorted(mutants.repository_files(repo)) == [".gitignore", "new.py", "pkg/a.py"]
    mutants.scratch_copy(copy, repo)
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()) == [".gitignore", "new.py",
                                                                                        "pkg/a.py"]
    assert (copy / "pkg/a.py").read_text() == "edited\n"  # the working tree, not the commit
    assert (repo / "pkg/a.py").read_text() == "edited\n" and (repo / "ignored.txt").exists()  # the source untouched


@pytest.mark.slow
def test_the_tests_fail_on_every_mutant(capsys):
    assert mutants.main([]) == 0, capsys.readouterr().out
