import numpy as np
import pytest

from recembed.data import Interactions, make_ratings_dataset, read_movielens, write_movielens
from recembed.data.movielens import detect_movielens_layout
from recembed.errors import ConfigError, DataFormatError, UnknownKeyError


def _raw(data):
    """Events as sorted (raw user, raw item, rating, timestamp) tuples."""
    users = data.user_ids[data.user_rows].tolist()
    items = data.item_ids[data.item_rows].tolist()
    return sorted(zip(users, items, data.ratings.tolist(), data.timestamps.tolist()))


@pytest.mark.parametrize("layout", ["u.data", "ratings.csv", "ratings.dat"])
@pytest.mark.parametrize("rounded", [True, False])
def test_write_read_round_trip(tmp_path, layout, rounded):
    data = make_ratings_dataset(num_users=40, num_items=30, num_ratings=300, seed=3, round_ratings=rounded).interactions
    path = tmp_path / layout
    write_movielens(data, path, layout=layout)
    assert detect_movielens_layout(path) == layout
    back = read_movielens(path)
    assert _raw(back) == _raw(data)
    assert back.ratings.dtype == np.float32 and back.timestamps.dtype == np.int64
    # Only ids that occur get rows, in sorted raw-id order.
    assert back.user_ids.tolist() == sorted(set(data.user_ids[data.user_rows].tolist()))


def test_u_data_layout_and_folder_lookup(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t881250950\n")
    data = read_movielens(folder)
    assert data.num_rows == {"user": 2, "item": 2}
    assert data.user_ids.tolist() == [186, 196] and data.item_ids.tolist() == [242, 302]
    assert data.user_rows.tolist() == [1, 0, 1] and data.item_rows.tolist() == [0, 1, 1]
    assert data.ratings.tolist() == [3.0, 3.0, 5.0]
    assert data.timestamps.tolist() == [881250949, 891717742, 881250950]
    assert data.user_row(196) == 1 and data.item_row(302) == 1


def test_ratings_csv_with_reordered_columns(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("timestamp,rating,movieId,userId\n100,4.5,7,1\n")
    data = read_movielens(path)
    assert (data.user_ids.tolist(), data.item_ids.tolist(), data.ratings.tolist()) == ([1], [7], [4.5])


@pytest.mark.parametrize(
    "text, message",
    [
        ("1\t2\t3\t4\n1\t2\t3\n", r"u\.data:2: expected 4 fields, found 3"),
        ("1\t2\t3\t4\n1\tx\t3\t4\n", r"u\.data:2: user/item ids '1', 'x' must be integers"),
        ("1\t2\t3\t4\n\n1\t2\tnan\t4\n", r"u\.data:3: rating 'nan' is not a finite number"),
        ("1\t2\t3\t4\n1\t2\t3\t4.5\n", r"u\.data:2: timestamp '4.5' is not an integer"),
    ],
)
def test_malformed_lines_name_line_and_reason(tmp_path, text, message):
    path = tmp_path / "u.data"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_movielens(path)


def test_skip_mode_counts_bad_lines(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,2,3,4\n1,2\n5,6,x,7\n8,9,1,2\n")
    with pytest.warns(RuntimeWarning, match=r"skipped 2 malformed row\(s\).*line 3: expected 4 fields"):
        data = read_movielens(path, on_error="skip")
    assert len(data) == 2 and data.user_ids.tolist() == [1, 8]


def test_bad_files(tmp_path):
    empty = tmp_path / "u.data"
    empty.write_text("\n")
    with pytest.raises(DataFormatError, match="the file is empty"):
        read_movielens(empty)
    header_only = tmp_path / "ratings.csv"
    header_only.write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(DataFormatError, match="no ratings"):
        read_movielens(header_only)
    no_stamp = tmp_path / "r2.csv"
    no_stamp.write_text("userId,movieId,rating\n1,2,3\n")
    with pytest.raises(UnknownKeyError, match=r"'timestamp' is missing .*present: \['userId', 'movieId', 'rating'\]"):
        read_movielens(no_stamp)
    odd = tmp_path / "odd.txt"
    odd.write_text("1 2 3 4\n")
    with pytest.raises(DataFormatError, match="cannot tell the MovieLens layout"):
        read_movielens(odd)
    with pytest.raises(DataFormatError, match="no MovieLens ratings file"):
        read_movielens(_empty_dir(tmp_path))


def _empty_dir(tmp_path):
    folder = tmp_path / "nothing"
    folder.mkdir()
    return folder


def test_writer_needs_timestamps_and_integer_ids(tmp_path):
    no_time = Interactions.from_raw_ids([1], [2])
    with pytest.raises(ConfigError, match="timestamps"):
        write_movielens(no_time, tmp_path / "u.data")
    text_ids = Interactions.from_raw_ids(["a"], [2], timestamps=[1])
    with pytest.raises(ConfigError, match="integers"):
        write_movielens(text_ids, tmp_path / "u.data")
    with pytest.raises(ConfigError, match="layout"):
        write_movielens(no_time, tmp_path / "x", layout="u.item")
