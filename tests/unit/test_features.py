"""The feature encoding fixed at fit time: column kinds, vocabularies, missing, unseen and mistyped values."""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime

from retrain.decisions.features import Column, FeatureEncoding
from retrain.decisions.training import Estimator, FittedModel, TrainingConfig, train_challenger
from retrain.schemas import LabeledExample

START = datetime(2026, 11, 28, tzinfo=UTC)


def plain(matrix: list[list[float]]) -> list[list[float | None]]:
    """NaN as None, so that matrices compare with ==."""
    return [[None if math.isnan(value) else value for value in line] for line in matrix]


def test_a_column_is_a_category_when_strings_outnumber_the_other_values():
    rows = [
        {"n": 1.0, "flag": True, "carrier": "UA", "mostly_text": "a", "empty": None},
        {"n": None, "flag": False, "carrier": "AA", "mostly_text": "b"},
        {"n": 3.0, "flag": True, "carrier": None, "mostly_text": 5.0},
    ]
    encoding = FeatureEncoding.fit(rows, min_count=1)
    assert encoding.names == ["carrier", "empty", "flag", "mostly_text", "n"]
    assert [column.kind for column in encoding.columns] == ["category", "number", "number", "category", "number"]
    assert encoding.categorical == [True, False, False, True, False]
    assert encoding.columns[0].categories == ("AA", "UA")


def test_the_vocabulary_keeps_the_frequent_categories_and_codes_the_rest_as_other():
    counts = {"UA": 9, "AA": 7, "DL": 5, "B6": 4, "NK": 1}
    rows = [{"carrier": name} for name, n in counts.items() for _ in range(n)]
    assert FeatureEncoding.fit(rows).columns == (Column("carrier", "category", ("AA", "DL", "UA")),)
    assert FeatureEncoding.fit(rows, max_categories=2).columns == (Column("carrier", "category", ("AA", "UA")),)

    encoding = FeatureEncoding.fit(rows)
    encoded = encoding.encode([{"carrier": "AA"}, {"carrier": "UA"}, {"carrier": "B6"}, {"carrier": "new"}, {}])
    assert plain(encoded.matrix) == [[0.0], [2.0], [3.0], [3.0], [None]]
    assert encoded.mistyped == []


def test_missing_extra_and_mistyped_values_are_encoded_as_the_fitted_columns_define():
    encoding = FeatureEncoding.fit([{"carrier": "UA", "hour": 7.0, "weekend": True}] * 5)
    rows = [
        {"carrier": "UA", "hour": 7.0, "weekend": False},
        {"carrier": None, "weekend": True, "extra": "ignored"},
        {"carrier": 3.0, "hour": "seven", "weekend": True},
        {"carrier": "UA", "hour": 2, "weekend": "yes"},
    ]
    encoded = encoding.encode(rows)
    assert plain(encoded.matrix) == [[0.0, 7.0, 0.0], [None, None, 1.0], [None, None, 1.0], [0.0, 2.0, None]]
    assert encoded.mistyped == [(2, "carrier"), (2, "hour"), (3, "weekend")]


def test_a_pickled_encoding_encodes_the_same_and_carries_no_cache():
    encoding = FeatureEncoding.fit([{"carrier": c} for c in "ABCAB" * 5])
    before = encoding.encode([{"carrier": "B"}, {"carrier": "Z"}]).matrix  # fills the code cache
    restored = pickle.loads(pickle.dumps(encoding))
    assert restored == encoding
    assert "_code_of" not in restored.columns[0].__dict__
    assert restored.encode([{"carrier": "B"}, {"carrier": "Z"}]).matrix == before == [[1.0], [3.0]]


def example(i: int, features: dict, label: int) -> LabeledExample:
    return LabeledExample(
        prediction_id=f"p{i}",
        model_id="m",
        model_version=1,
        features=features,
        prediction=0,
        label=label,
        prediction_timestamp=START,
        label_timestamp=START,
    )


def flights(n: int, seed: int) -> list[LabeledExample]:
    """Late when the carrier is UA or B6, whatever the hour; 10% of the hours missing."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        carrier = rng.choice(["UA", "AA", "DL", "B6", "WN"])
        hour = None if rng.random() < 0.1 else float(rng.randrange(24))
        out.append(example(i, {"carrier": carrier, "hour": hour}, int(carrier in ("UA", "B6"))))
    return out


def test_the_trainer_fits_categories_natively_and_the_version_scores_what_it_never_saw():
    estimator = Estimator("sklearn.ensemble.HistGradientBoostingClassifier", (("random_state", 0),))
    outcome = train_challenger(flights(1_000, seed=1), estimator, "classification", TrainingConfig())
    model = outcome.challenger

    assert outcome.challenger_score == 1.0
    assert model.encoding is not None and model.encoding.categorical == [True, False]
    assert model.estimator.get_params()["categorical_features"].tolist() == [True, False]
    predictions, mistyped = model.predict_encoded(
        [{"carrier": "UA", "hour": 3.0}, {"carrier": "B6"}, {"carrier": "AA", "hour": "x"}, {"carrier": "ZZ"}]
    )
    assert predictions[:3] == [1, 1, 0]
    assert predictions[3] in (0, 1)
    assert mistyped == [(2, "hour")]


def test_an_estimator_without_native_categories_gets_the_codes_as_numbers():
    estimator = Estimator("sklearn.ensemble.RandomForestClassifier", (("n_estimators", 10), ("random_state", 0)))
    outcome = train_challenger(flights(1_000, seed=2), estimator, "classification", TrainingConfig())
    assert outcome.challenger_score == 1.0
    assert outcome.challenger.predict([{"carrier": "UA", "hour": None}, {"carrier": "DL", "hour": 1.0}]) == [1, 0]


def test_a_version_pickled_before_encodings_existed_scores_its_numbers_as_before():
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_depth=1, random_state=0).fit([[0.0], [1.0]], [0, 1])
    old = FittedModel(tree, ["x"], "classification")
    del old.__dict__["encoding"]  # what unpickling a version written before the field existed gives
    restored = pickle.loads(pickle.dumps(old))
    assert restored.encoding is None
    assert restored.predict([{"x": 0.9}, {"x": 0.1}]) == [1, 0]
