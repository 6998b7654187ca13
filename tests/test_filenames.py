"""Partner file names are hostile: cleaned for display, safe in Content-Disposition."""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.filenames import MAX_NAME_BYTES, clean_filename, content_disposition


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("/abs/path/log.txt", "log.txt"),
        ("dir/", "upload.bin"),
        ("..", "upload.bin"),
        (".", "upload.bin"),
        ("...", "upload.bin"),
        ("", "upload.bin"),
        ("   ", "upload.bin"),
        ("a\x00b.txt", "ab.txt"),
        ("line\nbreak\r.txt", "linebreak.txt"),
        ("tab\there.txt", "tabhere.txt"),
        ("esc\x1b[31mred.txt", "esc[31mred.txt"),
        ("del\x7f.txt", "del.txt"),
        ("invoice\u202etxt.exe", "invoicetxt.exe"),
        ("\u2066isolate\u2069.pdf", "isolate.pdf"),
        ("zero\u200bwidth.txt", "zerowidth.txt"),
        ('a:b*c?d"e<f>g|h.txt', "a_b_c_d_e_f_g_h.txt"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("LPT1.log", "_LPT1.log"),
        ("COM9", "_COM9"),
        ("CONSOLE.txt", "CONSOLE.txt"),
        (" .hidden. ", "hidden"),
        ("e\u0301t\u00e9.txt", "\u00e9t\u00e9.txt"),  # NFC
        ("\x00\x01\x02", "upload.bin"),
    ],
)
def test_clean_filename(raw: str, expected: str) -> None:
    assert clean_filename(raw) == expected


def test_fallback_is_configurable() -> None:
    assert clean_filename("../", fallback="file") == "file"


@pytest.mark.parametrize("char", ["a", "é", "日", "😀"])
def test_very_long_names_are_capped_keeping_the_extension(char: str) -> None:
    name = clean_filename(char * 400 + ".tar.gz")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name.endswith(".gz")
    assert name.startswith(char)
    name.encode("utf-8")  # no split code point


def test_very_long_extension_is_not_kept_whole() -> None:
    name = clean_filename("x." + "y" * 400)
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name.startswith("x.")


@given(st.text(max_size=600))
def test_cleaned_names_are_always_safe(raw: str) -> None:
    name = clean_filename(raw)
    assert name
    assert name not in (".", "..")
    assert "/" not in name and "\\" not in name
    assert not any(unicodedata.category(c)[0] == "C" for c in name)
    assert len(name.encode()) <= MAX_NAME_BYTES


@given(st.text(max_size=40), st.sampled_from(["/", "\\", "/../", "\\..\\"]))
def test_nothing_before_a_separator_survives(prefix: str, sep: str) -> None:
    assert clean_filename(prefix + sep + "final.txt") == "final.txt"


def test_content_disposition_plain_ascii() -> None:
    assert content_disposition("report.pdf") == 'attachment; filename="report.pdf"'
    assert content_disposition("a b.txt", "inline") == 'inline; filename="a b.txt"'


def test_content_disposition_unicode_has_ascii_fallback_and_filename_star() -> None:
    header = content_disposition("Résumé 2024.pdf")
    assert header == (
        "attachment; filename=\"Resume 2024.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%202024.pdf"
    )
    header = content_disposition("日本語の報告.txt")
    assert header.startswith('attachment; filename="')
    assert "filename*=UTF-8''" in header
    assert unquote(header.split("filename*=UTF-8''", 1)[1]) == "日本語の報告.txt"


@pytest.mark.parametrize("name", ['quote".txt', "back\\slash.txt", "semi;colon.txt", "pct%41.txt"])
def test_content_disposition_escapes_specials(name: str) -> None:
    header = content_disposition(name)
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert not set(fallback) & set('"\\;%')
    assert unquote(header.split("filename*=UTF-8''", 1)[1]) == name


@given(st.text(min_size=1, max_size=100))
def test_content_disposition_is_always_ascii_and_round_trips(raw: str) -> None:
    name = clean_filename(raw)
    header = content_disposition(name)
    assert header.isascii()
    assert "\r" not in header and "\n" not in header
    assert header.count('"') == 2
    if "filename*=" in header:
        assert unquote(header.split("filename*=UTF-8''", 1)[1]) == name
    else:
        assert header == f'attachment; filename="{name}"'
