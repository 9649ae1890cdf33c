"""Run configs: TOML sections, typed command-line overrides, task defaults, errors that list valid keys."""

import pytest

from recembed.errors import ConfigError
from recembed.train.config import RunConfig, apply_overrides, load_config, parse_override_args


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_task_defaults_fill_model_loss_and_metric():
    rating = RunConfig.from_dict({"train": {"task": "rating"}})
    assert (rating.model.kind, rating.model.loss, rating.eval.metric) == ("dot_product", "mse", "rmse")
    implicit = RunConfig.from_dict({"train": {"task": "implicit"}, "model": {"kind": "two_tower"}})
    assert (implicit.model.loss, implicit.eval.metric) == ("in_batch_softmax", "ndcg@10")
    ctr = RunConfig.from_dict({"train": {"task": "ctr"}})
    assert (ctr.model.kind, ctr.model.loss, ctr.eval.metric) == ("dlrm", "bce", "auc")


def test_file_values_are_read_with_the_fields_types(tmp_path):
    path = write(tmp_path, """
[data]
source = "movielens"
path = "u.data"
[data.synthetic]
noise = 1          # an int is accepted for a float
[model]
embedding_dim = 48
tower_dims = [32, 16]
[train]
task = "implicit"
epochs = 7
early_stopping = false
[eval]
ks = [5]
""")
    config = load_config(path)
    assert config.data.synthetic.noise == 1.0 and isinstance(config.data.synthetic.noise, float)
    assert config.model.embedding_dim == 48 and config.model.tower_dims == [32, 16]
    assert config.train.epochs == 7 and config.train.early_stopping is False
    assert config.eval.ks == [5]
    assert config.train.out_dir.endswith("run")  # runs/<file name> by default


def test_command_line_overrides_take_the_type_of_the_default(tmp_path):
    path = write(tmp_path, "[train]\ntask = 'rating'\n")
    pairs = parse_override_args(["--train.epochs", "3", "--model.embedding_lr=0.5", "--eval.ks", "5,10",
                                 "--train.restore_best", "no", "--model.bottom_mlp", "[8, 4]"])
    config = load_config(path, pairs)
    assert config.train.epochs == 3
    assert config.model.embedding_lr == 0.5
    assert config.eval.ks == [5, 10]
    assert config.train.restore_best is False
    assert config.model.bottom_mlp == [8, 4]


def test_an_unknown_key_in_the_file_lists_the_valid_keys(tmp_path):
    path = write(tmp_path, "[train]\nepoch = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "unknown key 'epoch' in [train]" in message and "did you mean 'epochs'" in message
    for valid in ("batch_size", "epochs", "dense_lr", "early_stopping"):
        assert valid in message


def test_an_unknown_section_and_nested_key_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="valid keys of the top level.*data, model, train, eval"):
        load_config(write(tmp_path, "[optimizer]\nlr = 1\n"))
    with pytest.raises(ConfigError, match=r"unknown key 'rows' in \[data.synthetic\].*num_users"):
        load_config(write(tmp_path, "[data.synthetic]\nrows = 1\n"))


def test_an_unknown_key_on_the_command_line_lists_the_valid_keys():
    config = RunConfig.from_dict({})
    with pytest.raises(ConfigError, match=r"unknown key 'dimension' in \[model\].*embedding_dim"):
        apply_overrides(config, [("model.dimension", "8")])
    with pytest.raises(ConfigError, match="names a section"):
        apply_overrides(config, [("data.synthetic", "1")])
    with pytest.raises(ConfigError, match="expected int"):
        apply_overrides(config, [("train.epochs", "three")])


def test_wrong_types_and_values_are_named():
    with pytest.raises(ConfigError, match=r"train.epochs = 'three' has type str; expected int"):
        RunConfig.from_dict({"train": {"epochs": "three"}})
    with pytest.raises(ConfigError, match="train.task = 'ranking' is not one of"):
        RunConfig.from_dict({"train": {"task": "ranking"}})
    with pytest.raises(ConfigError, match="cannot be trained for train.task = 'rating'"):
        RunConfig.from_dict({"train": {"task": "rating"}, "model": {"kind": "dlrm"}})
    with pytest.raises(ConfigError, match="model.embedding_dim = 0"):
        RunConfig.from_dict({"model": {"embedding_dim": 0}})
    with pytest.raises(ConfigError, match="set data.path"):
        RunConfig.from_dict({"data": {"source": "movielens"}})


def test_override_arguments_must_be_dotted_and_have_values():
    assert parse_override_args(["--a.b=1", "--c.d", "x"]) == [("a.b", "1"), ("c.d", "x")]
    with pytest.raises(ConfigError, match="unexpected argument"):
        parse_override_args(["--epochs", "3"])
    with pytest.raises(ConfigError, match="needs a value"):
        parse_override_args(["--train.epochs"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[train\nepochs = 3\n"))


def test_round_trip_through_a_dict():
    config = RunConfig.from_dict({"train": {"task": "ctr", "epochs": 2}, "model": {"kind": "dcnv2"}})
    again = RunConfig.from_dict(config.to_dict())
    assert again == config
