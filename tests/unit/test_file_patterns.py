"""How FileListener splits a glob pattern into the directory it watches and what it matches."""

from __future__ import annotations

import os

import pytest

from evkit.listeners.files import FilePattern, FileRecord, parse_pattern


def test_the_watched_directory_is_the_part_before_the_first_wildcard() -> None:
    assert parse_pattern("/data/incoming/*.csv") == FilePattern("/data/incoming", ("*.csv",))
    assert parse_pattern("/data/*/in/*.csv") == FilePattern("/data", ("*", "in", "*.csv"))
    assert parse_pattern("/data/**/*.csv") == FilePattern("/data", ("**", "*.csv"))


def test_a_pattern_without_wildcards_watches_its_directory_for_that_file() -> None:
    assert parse_pattern("/data/ready.flag") == FilePattern("/data", ("ready.flag",))


def test_a_relative_pattern_is_read_against_the_working_directory() -> None:
    assert parse_pattern("incoming/*.csv") == FilePattern(os.path.join(os.getcwd(), "incoming"), ("*.csv",))


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/d/*.csv", "/d/a.csv", True),
        ("/d/*.csv", "/d/a.txt", False),
        ("/d/*.csv", "/d/sub/a.csv", False),
        ("/d/*.csv", "/d/.a.csv", False),  # a writer's temporary dot file
        ("/d/.*.csv", "/d/.a.csv", True),
        ("/d/*.csv", "/other/a.csv", False),
        ("/d/**/*.csv", "/d/a.csv", True),
        ("/d/**/*.csv", "/d/x/y/a.csv", True),
        ("/d/*/in/*.csv", "/d/x/in/a.csv", True),
        ("/d/*/in/*.csv", "/d/x/out/a.csv", False),
        ("/d/report-[0-9].csv", "/d/report-7.csv", True),
    ],
)
def test_matching_follows_glob(pattern: str, path: str, matches: bool) -> None:
    assert parse_pattern(pattern).matches(path) is matches
    assert parse_pattern(pattern).recursive is (pattern.count("/") > 2)


def test_a_file_record_names_its_version() -> None:
    record = FileRecord(path="/d/a.csv", size=3, mtime_ns=1_700_000_000_500_000_000)
    assert record.name == "a.csv"
    assert record.version == "/d/a.csv:3:1700000000500000000"
    assert record.mtime.isoformat() == "2023-11-14T22:13:20.500000+00:00"
