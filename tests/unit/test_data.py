"""Reading labelled files: last-tab split, no quoting, header detection, CSV."""

from pathlib import Path

import pytest

from reviewserve.model.data import read_file, read_files


def test_tsv_splits_on_the_last_tab_and_keeps_quotes(tmp_path: Path) -> None:
    path = tmp_path / "uci.txt"
    path.write_text('He said "great"\tproduct\t1\nBad.\t0\n\n')
    assert read_file(path) == (['He said "great"\tproduct', "Bad."], [1, 0])


def test_header_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "sst.tsv"
    path.write_text("sentence\tlabel\ngood \t1\n")
    assert read_file(path) == (["good "], [1])


def test_csv_with_named_columns_and_word_labels(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text('body,stars,sentiment\n"Loved it, really",5,positive\nmeh,1,negative\n')
    texts, targets = read_file(path, text_column="body", label_column="sentiment")
    assert texts == ["Loved it, really", "meh"] and targets == [1, 0]


def test_bad_label_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("fine\t1\nodd\tmaybe\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: label 'maybe'"):
        read_file(path)


def test_read_files_records_hash_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.tsv"
    path.write_text("x\t1\ny\t0\n")
    data = read_files([path])
    assert data.files[0].rows == 2 and len(data.files[0].sha256) == 64
