"""Hostile manifests (`mossep evaluate list.csv`, `--train-set list.csv`): whatever the CSV holds, the answer is a
one-line error naming the file, the line and the cause, before any model is loaded; never a traceback."""
from __future__ import annotations

import pytest

from faults import one_line_error, run, tone
from mossep.datasets import find_items, manifest_items
from mossep.errors import MossepError


@pytest.fixture()
def clips(tmp_path):
    for n in ("m", "a", "b"):
        tone(tmp_path / f"{n}.wav", seconds=0.5)
    (tmp_path / "folder.wav").mkdir()
    return tmp_path


CASES = {
    "a row naming a folder": ("mix,s1,s2\nfolder.wav,a.wav,b.wav\n", ["list.csv:2", "folder.wav", "is a directory"]),
    "a missing file": ("mix,s1,s2\nm.wav,a.wav,nope.wav\n", ["list.csv:2", "nope.wav", "does not exist"]),
    "more cells than columns": ("mix,s1,s2\nm.wav,a.wav,b.wav,extra.wav\n", ["list.csv:2", "more cells"]),
    "an empty cell": ("mix,s1,s2\nm.wav,,b.wav\n", ["list.csv:2", "empty"]),
    "no header": ("m.wav,a.wav,b.wav\n", ["list.csv", "header", "mix,s1,s2"]),
    "no source columns": ("mix,id\nm.wav,x\n", ["list.csv", "header"]),
    "the same file twice": ("mix,s1,s2\nm.wav,a.wav,a.wav\n", ["list.csv:2", "same file twice"]),
    "a duplicate id": ("id,mix,s1,s2\nx,m.wav,a.wav,b.wav\nx,m.wav,b.wav,a.wav\n", ["list.csv:3", "duplicate"]),
    "a name too long": ("mix,s1,s2\n" + "n" * 300 + ".wav,a.wav,b.wav\n", ["list.csv:2", "name too long"]),
    "a NUL byte": ("mix,s1,s2\nm.wav,a\0.wav,b.wav\n", ["list.csv:2", "NUL character"]),
    "a field over the csv limit": ("mix,s1,s2\n\"" + "x" * 200_000 + "\",a.wav,b.wav\n", ["list.csv", "cannot read"]),
    "only a header": ("mix,s1,s2\n", ["no mixtures"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_manifest_is_one_line(clips, capsys, case):
    text, words = CASES[case]
    (clips / "list.csv").write_text(text)
    with pytest.raises(MossepError) as e:
        find_items(clips / "list.csv")
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    code, _, err = run(["evaluate", clips / "list.csv", "--model", clips / "no-such-model"], capsys)
    one_line_error(code, err, *words)  # the manifest is checked before the (missing) model


def test_undecodable_bytes_are_one_line(clips):
    (clips / "list.csv").write_bytes(b"mix,s1,s2\n\xff\xfe\xfa,a.wav,b.wav\n")
    with pytest.raises(MossepError, match="cannot read manifest"):
        manifest_items(clips / "list.csv")


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_header(clips):
    (clips / "list.csv").write_text("\ufeffmix,s1,s2\nm.wav,a.wav,b.wav\n", encoding="utf-8")
    (item,) = manifest_items(clips / "list.csv")
    assert item.mix == clips / "m.wav" and item.sources == [clips / "a.wav", clips / "b.wav"]


def test_a_manifest_that_is_not_a_regular_file(tmp_path):
    import os

    fifo = tmp_path / "list.csv"
    os.mkfifo(fifo)  # opening it for reading would wait forever
    with pytest.raises(MossepError, match="neither a regular file nor a folder"):
        find_items(fifo)


def test_a_good_manifest_still_reads(clips):
    (clips / "list.csv").write_text("id,mix,s1,s2\none,m.wav,a.wav,b.wav\n\n")
    (item,) = manifest_items(clips / "list.csv")
    assert item.id == "one" and item.mix == clips / "m.wav"
