"""The project page's runs table shows a column for each setting that differs between the listed runs, and says the
shared ones once; accuracies have one decimal, so 0.981 and 0.975 no longer both read 98%."""
from types import SimpleNamespace

from frontend.run_table import SETTINGS, accuracy_text, differing_settings, run_table, starting_weights
from workers.engine.training.spec import resolve_spec


def spec(**settings) -> dict:
    return resolve_spec(settings).to_dict()


def keys(settings) -> list[str]:
    return [setting.key for setting in settings]


def test_only_the_settings_that_differ_get_a_column_in_a_fixed_order():
    specs = [spec(epochs=8, batch_size=16, optimizer={"learning_rate": 1e-3}),
             spec(epochs=8, batch_size=32, optimizer={"learning_rate": 1e-3}),
             spec(epochs=8, batch_size=32, optimizer={"learning_rate": 3e-4}, model={"architecture": "resnet18", "weights": "imagenet"})]
    assert keys(differing_settings(specs)) == ["network", "weights", "learning_rate", "batch_size"]
    assert keys(differing_settings(specs[:2])) == ["batch_size"]


def test_one_run_or_identical_runs_have_no_setting_columns():
    assert differing_settings([]) == []
    assert differing_settings([spec(epochs=3)]) == []
    assert differing_settings([spec(epochs=3), spec(epochs=3)]) == []


def test_starting_weights_name_the_earlier_run_or_imported_model():
    assert starting_weights(spec()) == "random"
    assert starting_weights(spec(model={"architecture": "resnet18", "weights": "imagenet"})) == "ImageNet"
    assert starting_weights(spec(model={"architecture": "resnet18", "weights": "run", "start_run": 12})) == "run #12"
    # Two runs that each start from an earlier run, but not the same one, differ in their starting weights.
    runs = [spec(model={"weights": "run", "start_run": 12}), spec(model={"weights": "run", "start_run": 13})]
    assert keys(differing_settings(runs)) == ["weights"]


def test_a_spec_that_does_not_say_counts_as_a_value_of_its_own():
    """Runs stored before a setting existed: the missing value is shown as a dash, and differs from a stated one."""
    assert keys(differing_settings([{"epochs": 5}, {"epochs": 5, "batch_size": 32}])) == ["batch_size"]
    assert keys(differing_settings([{}, {}])) == []


def test_accuracy_has_one_decimal():
    assert accuracy_text(0.981) == "98.1%"
    assert accuracy_text(0.975) == "97.5%"
    assert accuracy_text(1.0) == "100.0%"
    assert accuracy_text(None) == "–"


def test_the_table_rows_carry_text_and_a_sortable_value():
    def run(name, accuracy, **settings):
        return SimpleNamespace(name=name, spec=spec(**settings), test_accuracy=accuracy)

    runs = [run("a", 0.981, optimizer={"learning_rate": 1e-3}), run("b", 0.975, optimizer={"learning_rate": 1e-5}), run("c", None)]
    table = run_table(runs)
    assert keys(table["columns"]) == ["learning_rate"]
    assert [row["cells"][0]["text"] for row in table["rows"]] == ["0.001", "1e-05", "0.003"]
    assert [row["cells"][0]["sort"] for row in table["rows"]] == ["0.001", "1e-05", "0.003"]  # Number("1e-05") in JS
    assert [(row["accuracy_text"], row["accuracy"]) for row in table["rows"]] == [("98.1%", "0.981"), ("97.5%", "0.975"), ("–", "")]
    assert [shared["title"] for shared in table["shared"]] == [setting.title for setting in SETTINGS if setting.key != "learning_rate"]
    assert {shared["title"]: shared["text"] for shared in table["shared"]}["Batch size"] == "32"
    assert run_table([]) == {"columns": [], "rows": [], "shared": []}
