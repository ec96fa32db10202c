"""Tests for stream.walk: which files the walk chooses, in which order, and what it reports as skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream.errors import ConfigError, SourceError
from stream.model import SourceFile
from stream.walk import DEFAULT_EXCLUDES, Skip, read_source, walk


def make_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def relpaths(results: list[SourceFile | Skip]) -> list[str]:
    return [r.relpath for r in results if isinstance(r, SourceFile)]


def skips(results: list[SourceFile | Skip]) -> list[tuple[str, str]]:
    return [(r.relpath, r.reason) for r in results if isinstance(r, Skip)]


def run(*paths: str | Path, **kwargs: object) -> list[SourceFile | Skip]:
    return list(walk(list(paths), **kwargs))  # type: ignore[arg-type]


def test_order_is_depth_first_with_files_and_dirs_interleaved_by_name(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "b.py": "",
            "a/z.py": "",
            "a/m/x.py": "",
            "a/b.py": "",
            "a_file.py": "",
            "c/d.py": "",
            "B.py": "",
        },
    )
    results = run(tmp_path)
    # Plain code-point sort of names: "B" < "a" < "a_file" ("/" never enters the comparison).
    assert relpaths(results) == ["B.py", "a/b.py", "a/m/x.py", "a/z.py", "a_file.py", "b.py", "c/d.py"]
    assert skips(results) == []
    assert relpaths(run(tmp_path)) == relpaths(results)


def test_source_file_fields(tmp_path: Path) -> None:
    make_tree(tmp_path, {"pkg/mod.py": "x = 1\n"})
    [sf] = run(tmp_path)
    assert isinstance(sf, SourceFile)
    st = (tmp_path / "pkg/mod.py").stat()
    assert sf.path.is_absolute()
    assert sf.path.samefile(tmp_path / "pkg/mod.py")
    assert (sf.relpath, sf.size, sf.mtime_ns) == ("pkg/mod.py", 6, st.st_mtime_ns)


def test_only_matching_suffixes_are_yielded_and_others_are_not_skips(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": "", "b.txt": "", "c.pyi": "", "d.js": "", "Makefile": ""})
    results = run(tmp_path)
    assert relpaths(results) == ["a.py"]
    assert skips(results) == []
    assert relpaths(run(tmp_path, suffixes={".py", ".pyi", ".js"})) == ["a.py", "c.pyi", "d.js"]


def test_nested_gitignore_negation_reincludes_and_deeper_file_overrides_parent(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            ".gitignore": "gen_*.py\n!keep_*.py\nkeep_me_not.py\n# comment\n\nlogs/\n",
            "main.py": "",
            "gen_a.py": "",
            "keep_b.py": "",
            "logs/x.py": "",
            "sub/.gitignore": "!gen_wanted.py\nkeep_*.py\n",
            "sub/gen_wanted.py": "",  # re-included by the deeper file
            "sub/gen_other.py": "",  # still ignored by the root file
            "sub/keep_c.py": "",  # the deeper file re-ignores what the root re-included
            "sub/plain.py": "",
            "sub/deeper/.gitignore": "/anchored.py\n",
            "sub/deeper/anchored.py": "",  # anchored to sub/deeper
            "sub/deeper/more/anchored.py": "",  # not matched by an anchored pattern one level up
        },
    )
    assert relpaths(run(tmp_path)) == [
        "keep_b.py",
        "main.py",
        "sub/deeper/more/anchored.py",
        "sub/gen_wanted.py",
        "sub/plain.py",
    ]


def test_ignored_directory_is_not_entered_so_children_cannot_be_reincluded(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            ".gitignore": "vendor/\n",
            "vendor/.gitignore": "!*.py\n",
            "vendor/lib.py": "",
            "src/vendor/also.py": "",  # `vendor/` (no leading slash) matches at any depth
            "src/ok.py": "",
        },
    )
    assert relpaths(run(tmp_path)) == ["src/ok.py"]


def test_dir_only_pattern_does_not_ignore_a_file_of_that_name(tmp_path: Path) -> None:
    make_tree(tmp_path, {".gitignore": "tools.py/\n", "tools.py": ""})
    assert relpaths(run(tmp_path)) == ["tools.py"]


def test_git_info_exclude_is_honoured_and_root_gitignore_can_override_it(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            ".git/info/exclude": "local_*.py\nscratch/\n",
            ".gitignore": "!local_shared.py\n",
            "local_notes.py": "",
            "local_shared.py": "",
            "scratch/a.py": "",
            "real.py": "",
        },
    )
    assert relpaths(run(tmp_path)) == ["local_shared.py", "real.py"]


def test_exclude_globs_apply_relative_to_each_root(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "app/main.py": "",
            "app/api_pb2.py": "",
            "app/tests/test_main.py": "",
            "tests/test_x.py": "",
            "setup.py": "",
        },
    )
    results = run(tmp_path, excludes=["tests/", "*_pb2.py"])
    assert relpaths(results) == ["app/main.py", "setup.py"]
    assert skips(results) == []
    # Anchored: only the root's own tests/ goes.
    assert relpaths(run(tmp_path, excludes=["/tests/"])) == [
        "app/api_pb2.py",
        "app/main.py",
        "app/tests/test_main.py",
        "setup.py",
    ]


def test_invalid_exclude_glob_is_a_config_error_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        walk([tmp_path], excludes=["!"])


def test_broken_pattern_in_a_gitignore_does_not_stop_the_walk(tmp_path: Path) -> None:
    make_tree(tmp_path, {".gitignore": "!\nskip_me.py\n", "skip_me.py": "", "keep.py": ""})
    assert relpaths(run(tmp_path)) == ["keep.py"]


def test_git_dir_and_default_excludes_are_skipped(tmp_path: Path) -> None:
    files = {f"{name}/m.py": "" for name in DEFAULT_EXCLUDES}
    files |= {".git/hooks/hook.py": "", "src/node_modules/dep.py": "", "src/app.py": "", "build.py": ""}
    make_tree(tmp_path, files)
    results = run(tmp_path)
    # A *file* named like an excluded dir is kept.
    assert relpaths(results) == ["build.py", "src/app.py"]
    assert skips(results) == []


def test_default_excludes_off_includes_them_but_never_dot_git(tmp_path: Path) -> None:
    make_tree(tmp_path, {".git/hooks/hook.py": "", "build/gen.py": "", ".venv/lib/x.py": "", "a.py": ""})
    assert relpaths(run(tmp_path, default_excludes=False)) == [".venv/lib/x.py", "a.py", "build/gen.py"]


def test_too_large_file_is_skipped_with_reason_and_detail(tmp_path: Path) -> None:
    make_tree(tmp_path, {"big.py": "x" * 101, "edge.py": "x" * 100, "small.py": "x"})
    results = run(tmp_path, max_file_bytes=100)
    assert relpaths(results) == ["edge.py", "small.py"]
    [skip] = [r for r in results if isinstance(r, Skip)]
    assert skip == Skip("big.py", "too_large", "101 bytes > --max-file-bytes 100")


def test_read_source_returns_bytes_and_rejects_binary(tmp_path: Path) -> None:
    make_tree(
        tmp_path, {"text.py": "print('hi')\r\n", "blob.py": b"abc\x00def", "late.py": b"a" * 20 + b"\0"}
    )
    by_rel = {r.relpath: r for r in run(tmp_path) if isinstance(r, SourceFile)}
    assert read_source(by_rel["text.py"]) == b"print('hi')\r\n"
    with pytest.raises(SourceError) as info:
        read_source(by_rel["blob.py"])
    assert info.value.reason == "binary"
    # Only the probe window is checked for NUL.
    assert read_source(by_rel["late.py"], probe_bytes=10) == b"a" * 20 + b"\0"
    with pytest.raises(SourceError) as info:
        read_source(by_rel["late.py"])
    assert info.value.reason == "binary"


def test_read_source_on_vanished_file_is_unreadable(tmp_path: Path) -> None:
    make_tree(tmp_path, {"gone.py": "x"})
    [sf] = run(tmp_path)
    assert isinstance(sf, SourceFile)
    sf.path.unlink()
    with pytest.raises(SourceError) as info:
        read_source(sf)
    assert info.value.reason == "unreadable"


def test_broken_symlink_is_unreadable(tmp_path: Path) -> None:
    make_tree(tmp_path, {"ok.py": ""})
    (tmp_path / "dangling.py").symlink_to(tmp_path / "missing.py")
    (tmp_path / "dangling_no_suffix").symlink_to(tmp_path / "missing")  # not a candidate: silent
    results = run(tmp_path)
    assert relpaths(results) == ["ok.py"]
    assert [r for r in results if isinstance(r, Skip)] == [
        Skip("dangling.py", "unreadable", "broken symlink")
    ]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_permission_denied_dir_and_file_are_unreadable(tmp_path: Path) -> None:
    make_tree(tmp_path, {"locked/a.py": "", "secret.py": "x", "ok.py": ""})
    (tmp_path / "locked").chmod(0)
    (tmp_path / "secret.py").chmod(0)
    try:
        results = run(tmp_path)
        assert relpaths(results) == ["ok.py", "secret.py"]  # stat works without read permission
        assert skips(results) == [("locked", "unreadable")]
        [secret] = [r for r in results if isinstance(r, SourceFile) and r.relpath == "secret.py"]
        with pytest.raises(SourceError) as info:
            read_source(secret)
        assert info.value.reason == "unreadable"
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_symlinks_pointing_outside_the_root_are_skipped(tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "outside", {"secret.py": "", "pkg/mod.py": ""})
    root = make_tree(tmp_path / "root", {"a.py": ""})
    (root / "link.py").symlink_to(outside / "secret.py")
    (root / "linkdir").symlink_to(outside / "pkg", target_is_directory=True)
    (root / "link.txt").symlink_to(outside / "secret.py")  # wrong suffix: silent
    results = run(root)
    assert relpaths(results) == ["a.py"]
    assert skips(results) == [("link.py", "symlink_outside_root"), ("linkdir", "symlink_outside_root")]


def test_symlink_loop_to_ancestor_is_reported_and_walk_terminates(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"a/b/c.py": "", "top.py": ""})
    (root / "a/b/up").symlink_to(root / "a", target_is_directory=True)
    (root / "a/b/self").symlink_to(".", target_is_directory=True)
    (root / "a/b/to_root").symlink_to(root, target_is_directory=True)
    (root / "ping").symlink_to("pong")  # a chain of links that never ends
    (root / "pong").symlink_to("ping")
    results = run(root)
    assert relpaths(results) == ["a/b/c.py", "top.py"]
    assert skips(results) == [
        ("a/b/self", "symlink_loop"),
        ("a/b/to_root", "symlink_loop"),
        ("a/b/up", "symlink_loop"),
    ]


def test_symlinks_inside_the_root_are_followed_under_the_link_name(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"real/mod.py": "x = 1\n", "util.py": "y = 2\n"})
    (root / "alias").symlink_to("real", target_is_directory=True)
    (root / "shortcut.py").symlink_to("util.py")
    results = run(root)
    assert relpaths(results) == ["alias/mod.py", "real/mod.py", "shortcut.py", "util.py"]
    assert skips(results) == []
    by_rel = {r.relpath: r for r in results if isinstance(r, SourceFile)}
    assert by_rel["alias/mod.py"].path == root.resolve() / "alias" / "mod.py"
    assert read_source(by_rel["shortcut.py"]) == b"y = 2\n"


def test_ignore_rules_apply_to_the_link_name_not_its_target(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"real/mod.py": "", ".gitignore": "alias\n"})
    (root / "alias").symlink_to("real", target_is_directory=True)
    (root / "node_modules").symlink_to(tmp_path, target_is_directory=True)  # excluded before it is judged
    results = run(root)
    assert relpaths(results) == ["real/mod.py"]
    assert skips(results) == []


def test_root_that_is_a_symlink_is_resolved_once(tmp_path: Path) -> None:
    real = make_tree(tmp_path / "real", {"pkg/a.py": ""})
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    results = run(tmp_path / "alias")
    assert relpaths(results) == ["pkg/a.py"]
    assert skips(results) == []


def test_file_given_directly_is_yielded_by_name_whatever_its_suffix_or_ignores(tmp_path: Path) -> None:
    make_tree(tmp_path, {"proj/.gitignore": "*.py\n", "proj/sub/gen.py": "", "proj/script": "#!/bin/sh\n"})
    results = run(tmp_path / "proj/sub/gen.py", tmp_path / "proj/script", excludes=["*"])
    assert relpaths(results) == ["gen.py", "script"]
    assert all(isinstance(r, SourceFile) and r.path.is_absolute() for r in results)
    assert skips(run(tmp_path / "proj/script", max_file_bytes=1)) == [("script", "too_large")]


def test_missing_path_is_not_found(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": ""})
    results = run(tmp_path / "nope", str(tmp_path / "a.py"))
    assert relpaths(results) == ["a.py"]
    assert skips(results) == [((tmp_path / "nope").as_posix(), "not_found")]


def test_multiple_roots_in_the_order_given_each_with_its_own_relpaths_and_rules(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "zeta/.gitignore": "skip.py\n",
            "zeta/skip.py": "",
            "zeta/z.py": "",
            "alpha/skip.py": "",  # zeta's .gitignore does not reach here
            "alpha/tests/t.py": "",
            "alpha/a.py": "",
        },
    )
    results = run(tmp_path / "zeta", tmp_path / "alpha", excludes=["tests/"])
    assert [(Path(r.path).parent.name, r.relpath) for r in results if isinstance(r, SourceFile)] == [
        ("zeta", "z.py"),
        ("alpha", "a.py"),
        ("alpha", "skip.py"),
    ]


def test_empty_directory_and_no_paths_yield_nothing(tmp_path: Path) -> None:
    assert run(tmp_path) == []
    assert list(walk([])) == []


def test_deep_tree_does_not_hit_the_recursion_limit(tmp_path: Path) -> None:
    depth = 1100  # deeper than the default recursion limit; the path still fits in PATH_MAX
    deep = str(tmp_path)
    for _ in range(depth):  # one mkdir at a time: os.makedirs itself recurses
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    Path(deep, "leaf.py").write_text("")
    try:
        assert relpaths(run(tmp_path)) == ["d/" * depth + "leaf.py"]
    finally:
        # pytest's own clean-up of old temp dirs recurses and would fail on this depth: undo it here.
        os.remove(os.path.join(deep, "leaf.py"))
        while deep != str(tmp_path):
            os.rmdir(deep)
            deep = os.path.dirname(deep)
