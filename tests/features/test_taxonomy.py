"""Tests for proximity_server.features.taxonomy (interest normalisation + category lookup)."""

from __future__ import annotations

import json
import pathlib

import pytest

from proximity_server.features.taxonomy import (
    DEFAULT_TAXONOMY_PATH,
    MAX_INTEREST_LENGTH,
    MAX_INTERESTS,
    OTHER_CATEGORY,
    InterestError,
    Taxonomy,
    TaxonomyError,
    load_taxonomy,
    normalise_interests,
)


def _write(tmp_path: pathlib.Path, document: object) -> pathlib.Path:
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# --- the packaged data file -------------------------------------------------


def test_packaged_taxonomy_sizes() -> None:
    taxonomy = load_taxonomy()
    assert taxonomy.version == 1
    assert len(taxonomy.categories) >= 15
    assert taxonomy.interest_count >= 150
    assert taxonomy.synonym_count >= taxonomy.interest_count
    assert OTHER_CATEGORY not in taxonomy.categories
    assert isinstance(taxonomy.categories, frozenset)


def test_packaged_file_shape_and_lowercase_keys() -> None:
    document = json.loads(DEFAULT_TAXONOMY_PATH.read_text(encoding="utf-8"))
    assert document["version"] == 1
    assert OTHER_CATEGORY not in document["categories"]
    for key, body in document["categories"].items():
        assert key == key.casefold()
        assert body["label"] == body["label"].casefold() != OTHER_CATEGORY
        assert body["interests"]
        for interest, synonyms in body["interests"].items():
            assert interest == interest.casefold()
            assert all(s == s.casefold() for s in synonyms)


def test_default_taxonomy_is_cached() -> None:
    assert load_taxonomy() is load_taxonomy()


def test_explicit_path_loads_the_same_data() -> None:
    taxonomy = load_taxonomy(DEFAULT_TAXONOMY_PATH)
    assert taxonomy.categories == load_taxonomy().categories
    assert taxonomy.interest_count == load_taxonomy().interest_count


@pytest.mark.parametrize(
    ("interest", "category"),
    [
        ("hardstyle", "music"),
        ("techno", "music"),
        ("devops", "tech"),
        ("dev ops", "tech"),
        ("sre", "tech"),
        ("philosophy", "philosophy"),
        ("stoicism", "philosophy"),
        ("running", "fitness"),
        ("jogging", "fitness"),
        ("football", "sports"),
        ("soccer", "sports"),
        ("sci-fi", "books"),
        ("science fiction", "books"),
        ("hiking", "outdoors"),
        ("sourdough", "food"),
        ("ping pong", "sports"),
        ("d&d", "gaming"),
        ("español", "languages"),
    ],
)
def test_canonical_interests_and_synonyms(interest: str, category: str) -> None:
    assert load_taxonomy().category_of(interest) == category


def test_synonyms_share_a_category() -> None:
    taxonomy = load_taxonomy()
    assert taxonomy.category_of("running") == taxonomy.category_of("jogging")
    assert taxonomy.category_of("football") == taxonomy.category_of("soccer")
    assert taxonomy.category_of("sci-fi") == taxonomy.category_of("science fiction")


@pytest.mark.parametrize("interest", ["xyzzy", "competitive napping on trains", "other", "", "   "])
def test_unknown_interest_is_other(interest: str) -> None:
    assert load_taxonomy().category_of(interest) == OTHER_CATEGORY


@pytest.mark.parametrize(
    ("interest", "category"),
    [
        ("dev-ops", "tech"),  # hyphen -> space
        ("dev_ops", "tech"),  # underscore -> space
        ("sci fi", "books"),  # space form of "sci-fi"
        ("hip-hop", "music"),
        ("k pop", "music"),
        ("board game", "gaming"),  # singular of "board games"
        ("runners", "fitness"),  # plural "s" stripped
        ("devopss", OTHER_CATEGORY),  # only a single simple "s"
        ("dog", "pets"),  # "dogs" is the listed form
        ("Dev-Ops", "tech"),  # raw text is normalised too
        ("rubik\u2019s cube", "gaming"),  # typographic apostrophe
    ],
)
def test_light_variants(interest: str, category: str) -> None:
    assert load_taxonomy().category_of(interest) == category


def test_categories_for_sorted_unique_without_other() -> None:
    taxonomy = load_taxonomy()
    result = taxonomy.categories_for(["soccer", "techno", "football", "xyzzy", "hardstyle", "devops"])
    assert result == ["music", "sports", "tech"]
    assert taxonomy.categories_for(["xyzzy", "plugh"]) == []
    assert taxonomy.categories_for([]) == []


def test_taxonomy_is_immutable() -> None:
    taxonomy = load_taxonomy()
    with pytest.raises(AttributeError):
        taxonomy.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        taxonomy.terms["xyzzy"] = "tech"  # type: ignore[index]


# --- normalise_interests -----------------------------------------------------


def test_normalise_trims_collapses_and_casefolds() -> None:
    assert normalise_interests(["  Hard   Style ", "DevOps", "Sci-Fi\t Books"]) == [
        "hard style",
        "devops",
        "sci-fi books",
    ]


def test_normalise_unicode_casefold() -> None:
    assert normalise_interests(["ÉCOLE"]) == ["école"]
    assert normalise_interests(["Straße"]) == ["strasse"]
    # decomposed "e" + combining acute equals the composed form
    assert normalise_interests(["E\u0301cole"]) == ["école"]


def test_normalise_dedupes_keeping_first_seen_order() -> None:
    raw = ["Techno", "hiking", "TECHNO", " techno ", "chess", "Hiking"]
    assert normalise_interests(raw) == ["techno", "hiking", "chess"]


def test_limits_apply_after_dedupe() -> None:
    raw = [f"interest {i}" for i in range(MAX_INTERESTS)]
    assert normalise_interests(raw + [r.upper() for r in raw]) == raw


def test_max_sized_input_is_accepted() -> None:
    raw = [f"interest {i}" for i in range(MAX_INTERESTS)]
    assert len(normalise_interests(raw)) == MAX_INTERESTS
    assert normalise_interests(["x" * MAX_INTEREST_LENGTH]) == ["x" * MAX_INTEREST_LENGTH]


@pytest.mark.parametrize(
    "raw",
    [
        [],  # 0 items
        [f"interest {i}" for i in range(MAX_INTERESTS + 1)],  # 21 distinct items
        ["x" * (MAX_INTEREST_LENGTH + 1)],  # 65 characters
        ["ok", "y" * 65],
        "techno",  # not a list
        None,
        {"techno": True},
        ("techno",),
        ["techno", 3],  # non-str item
        [None],
        [b"techno"],
        [""],  # empty item
        ["techno", "   "],  # whitespace-only item
        ["tech\x00no"],  # control character
    ],
)
def test_invalid_interests_raise(raw: object) -> None:
    with pytest.raises(InterestError) as info:
        normalise_interests(raw)
    assert str(info.value)
    assert isinstance(info.value, ValueError)


def test_interest_error_messages_are_specific() -> None:
    with pytest.raises(InterestError, match="list"):
        normalise_interests("techno")
    with pytest.raises(InterestError, match=r"interests\[1\] must be a string"):
        normalise_interests(["techno", 3])
    with pytest.raises(InterestError, match=r"interests\[0\] must not be empty"):
        normalise_interests(["  "])
    with pytest.raises(InterestError, match=str(MAX_INTEREST_LENGTH)):
        normalise_interests(["x" * (MAX_INTEREST_LENGTH + 1)])
    with pytest.raises(InterestError, match=str(MAX_INTERESTS)):
        normalise_interests([str(i) for i in range(MAX_INTERESTS + 1)])


def test_normalised_interests_round_trip_through_taxonomy() -> None:
    taxonomy = load_taxonomy()
    interests = normalise_interests(["  SOCCER", "Dev-Ops", "Hardstyle", "made-up hobby"])
    assert taxonomy.categories_for(interests) == ["music", "sports", "tech"]


# --- loader validation --------------------------------------------------------


def _minimal() -> dict[str, object]:
    return {
        "version": 1,
        "categories": {
            "music": {"label": "music", "interests": {"techno": ["techno music"]}},
            "sports": {"label": "sports", "interests": {"football": ["soccer"]}},
        },
    }


def test_loader_accepts_minimal_file(tmp_path: pathlib.Path) -> None:
    taxonomy = load_taxonomy(_write(tmp_path, _minimal()))
    assert isinstance(taxonomy, Taxonomy)
    assert taxonomy.categories == frozenset({"music", "sports"})
    assert (taxonomy.interest_count, taxonomy.synonym_count) == (2, 2)
    assert taxonomy.category_of("soccer") == "sports"
    assert taxonomy.category_of("hardstyle") == OTHER_CATEGORY


def test_loader_rejects_term_in_two_categories(tmp_path: pathlib.Path) -> None:
    document = {
        "version": 1,
        "categories": {
            "music": {"label": "music", "interests": {"techno": ["rave"]}},
            "dance": {"label": "dance", "interests": {"raving": ["rave"]}},
        },
    }
    with pytest.raises(TaxonomyError, match="two categories"):
        load_taxonomy(_write(tmp_path, document))


def test_loader_rejects_interest_reused_as_synonym_elsewhere(
    tmp_path: pathlib.Path,
) -> None:
    document = {
        "version": 1,
        "categories": {
            "fitness": {"label": "fitness", "interests": {"running": ["jogging"]}},
            "outdoors": {
                "label": "outdoors",
                "interests": {"trail running": ["running"]},
            },
        },
    }
    with pytest.raises(TaxonomyError, match="two categories"):
        load_taxonomy(_write(tmp_path, document))


def test_loader_rejects_conflict_that_differs_only_by_hyphen(
    tmp_path: pathlib.Path,
) -> None:
    document = {
        "version": 1,
        "categories": {
            "tech": {"label": "tech", "interests": {"devops": ["dev-ops"]}},
            "music": {"label": "music", "interests": {"dev ops": []}},
        },
    }
    with pytest.raises(TaxonomyError, match="two categories"):
        load_taxonomy(_write(tmp_path, document))


def test_loader_rejects_duplicate_within_category(tmp_path: pathlib.Path) -> None:
    document = {
        "version": 1,
        "categories": {
            "music": {
                "label": "music",
                "interests": {"techno": ["rave"], "edm": ["rave"]},
            },
        },
    }
    with pytest.raises(TaxonomyError, match="duplicate"):
        load_taxonomy(_write(tmp_path, document))


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"categories": {"music": {"label": "music", "interests": {"techno": []}}}},
        {
            "version": "1",
            "categories": {"music": {"label": "music", "interests": {"techno": []}}},
        },
        {"version": 1, "categories": {}},
        {
            "version": 1,
            "categories": {"other": {"label": "other", "interests": {"x": []}}},
        },
        {
            "version": 1,
            "categories": {"misc": {"label": "other", "interests": {"x": []}}},
        },
        {
            "version": 1,
            "categories": {"Music": {"label": "music", "interests": {"techno": []}}},
        },
        {
            "version": 1,
            "categories": {"music": {"label": "music", "interests": {"Techno": []}}},
        },
        {
            "version": 1,
            "categories": {"music": {"label": "music", "interests": {"techno": ["RAVE"]}}},
        },
        {
            "version": 1,
            "categories": {"music": {"label": "music", "interests": {"techno": [" rave"]}}},
        },
        {
            "version": 1,
            "categories": {"music": {"label": "music", "interests": {"techno": "rave"}}},
        },
        {
            "version": 1,
            "categories": {"music": {"label": "music", "interests": {"techno": [1]}}},
        },
        {"version": 1, "categories": {"music": {"label": "music", "interests": {}}}},
        {"version": 1, "categories": {"music": {"interests": {"techno": []}}}},
        {
            "version": 1,
            "categories": {
                "music": {"label": "music", "interests": {"techno": []}},
                "sound": {"label": "music", "interests": {"jazz": []}},
            },
        },
    ],
)
def test_loader_rejects_malformed_documents(tmp_path: pathlib.Path, document: object) -> None:
    with pytest.raises(TaxonomyError):
        load_taxonomy(_write(tmp_path, document))


def test_loader_rejects_invalid_json_and_missing_file(tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(TaxonomyError, match="invalid JSON"):
        load_taxonomy(broken)
    with pytest.raises(TaxonomyError, match="cannot read"):
        load_taxonomy(tmp_path / "missing.json")
