"""Curated interest taxonomy: interest normalisation and interest -> category lookup.

Phones register a list of free-text interests.  Two people nearby are nudged
when they share an interest *category* (not the exact interest), so
"hardstyle" and "techno" both land in ``music``.  The mapping lives in the
packaged data file ``proximity_server/features/data/taxonomy.json``::

    {"version": 1,
     "categories": {
        "<category key>": {
            "label": "<category label>",
            "interests": {"<canonical interest>": ["<synonym>", ...], ...}
        }, ...}}

Interests that are not in the taxonomy map to :data:`OTHER_CATEGORY`, which
never produces a match.

This module is deliberately free of aiohttp/redis imports so it can be used
from request handlers, workers and tests alike.

Public API:

* :data:`OTHER_CATEGORY`, :data:`MAX_INTERESTS`, :data:`MAX_INTEREST_LENGTH`
* :class:`InterestError` - bad client input (message is safe to return to the client)
* :class:`TaxonomyError` - bad taxonomy data file
* :func:`normalise_interests` - validate + normalise a client-supplied interest list
* :class:`Taxonomy` - the loaded lookup table
* :func:`load_taxonomy` - load (and for the packaged file, cache) a taxonomy
"""

from __future__ import annotations

import functools
import json
import pathlib
import types
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_TAXONOMY_PATH",
    "MAX_INTERESTS",
    "MAX_INTEREST_LENGTH",
    "OTHER_CATEGORY",
    "InterestError",
    "Taxonomy",
    "TaxonomyError",
    "load_taxonomy",
    "normalise_interests",
]

OTHER_CATEGORY = "other"
"""Category for interests not in the taxonomy; it never produces a match."""

MAX_INTERESTS = 20
"""Maximum number of distinct interests a client may register."""

MAX_INTEREST_LENGTH = 64
"""Maximum length of one interest, in characters, after normalisation."""

DEFAULT_TAXONOMY_PATH = pathlib.Path(__file__).resolve().parent / "data" / "taxonomy.json"
"""The taxonomy file shipped with the package."""

# Characters folded to a plain space when looking interests up, so that
# "dev-ops", "dev_ops" and "dev ops" are the same key.
_SEPARATOR_TABLE = str.maketrans({"-": " ", "_": " ", "\u2010": " ", "\u2011": " ", "\u2013": " "})
# Typographic apostrophes (U+2019 etc.) folded to an ASCII apostrophe.
_APOSTROPHE_TABLE = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


class InterestError(ValueError):
    """A client-supplied interest list is invalid.

    ``str(exc)`` is a short, human readable message suitable for an API error reply.
    """


class TaxonomyError(ValueError):
    """The taxonomy data file is malformed or internally inconsistent."""


def _normalise_text(text: str) -> str:
    """Unicode-normalise, casefold and collapse whitespace (no validation)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def _lookup_key(text: str) -> str:
    """Dictionary-key form: normalised, with separators and apostrophes folded."""
    folded = _normalise_text(text).translate(_SEPARATOR_TABLE).translate(_APOSTROPHE_TABLE)
    return " ".join(folded.split())


def normalise_interests(raw: object) -> list[str]:
    """Validate and normalise a client-supplied list of interests.

    Each item is Unicode-normalised (NFKC), stripped, has inner whitespace runs
    collapsed to a single space and is casefolded ("  Hard   Style " ->
    "hard style", "ÉCOLE" -> "école").  Duplicates (after normalisation) are
    dropped, keeping first-seen order.

    Raises:
        InterestError: ``raw`` is not a list of strings, an item is empty,
            too long or contains control characters, or the number of distinct
            interests is not within ``1..MAX_INTERESTS``.
    """
    if not isinstance(raw, list):
        raise InterestError("interests must be a list of strings")
    if not raw:
        raise InterestError("interests must contain at least one interest")

    seen: set[str] = set()
    result: list[str] = []
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            raise InterestError(f"interests[{index}] must be a string")
        interest = _normalise_text(item)
        if not interest:
            raise InterestError(f"interests[{index}] must not be empty")
        if len(interest) > MAX_INTEREST_LENGTH:
            raise InterestError(f"interests[{index}] is longer than {MAX_INTEREST_LENGTH} characters")
        if any(unicodedata.category(ch) == "Cc" for ch in interest):
            raise InterestError(f"interests[{index}] contains control characters")
        if interest in seen:
            continue
        seen.add(interest)
        result.append(interest)
        if len(result) > MAX_INTERESTS:
            raise InterestError(f"at most {MAX_INTERESTS} distinct interests are allowed")
    return result


@dataclass(frozen=True, eq=False)
class Taxonomy:
    """Immutable interest -> category lookup table.

    Build one with :func:`load_taxonomy` rather than directly.

    Attributes:
        version: the data file's ``version``.
        terms: lookup key (see :func:`_lookup_key`) of every canonical interest
            and synonym -> category label.
        category_labels: every category label (never contains ``OTHER_CATEGORY``).
        interest_count: number of canonical interests.
        synonym_count: number of synonyms (not counting canonical interests).
    """

    version: int
    terms: Mapping[str, str]
    category_labels: frozenset[str]
    interest_count: int
    synonym_count: int

    @property
    def categories(self) -> frozenset[str]:
        """All category labels; excludes :data:`OTHER_CATEGORY`."""
        return self.category_labels

    def category_of(self, interest: str) -> str:
        """Return the category label of ``interest``, or ``OTHER_CATEGORY`` if unknown.

        ``interest`` is expected to come from :func:`normalise_interests`, but
        it is normalised again here so raw text works too.  Besides the exact
        term, light variants are tried in order: hyphens/underscores as spaces
        ("dev-ops" -> "dev ops"; always applied), a trailing plural "s" removed
        ("board game" <- "board games"), and a plural "s" added ("dog" ->
        "dogs").
        """
        key = _lookup_key(interest)
        if not key:
            return OTHER_CATEGORY
        found = self.terms.get(key)
        if found is not None:
            return found
        if len(key) > 2 and key.endswith("s") and not key.endswith("ss"):
            found = self.terms.get(key[:-1])
            if found is not None:
                return found
        if len(key) > 1 and key[-1].isalpha():
            found = self.terms.get(key + "s")
            if found is not None:
                return found
        return OTHER_CATEGORY

    def categories_for(self, interests: Iterable[str]) -> list[str]:
        """Sorted, de-duplicated category labels of ``interests``.

        Unknown interests contribute nothing: ``OTHER_CATEGORY`` is never
        included, since it never produces a match.
        """
        found = {self.category_of(interest) for interest in interests}
        found.discard(OTHER_CATEGORY)
        return sorted(found)


def _check_term(term: object, where: str) -> str:
    if not isinstance(term, str):
        raise TaxonomyError(f"{where}: expected a string, got {type(term).__name__}")
    if not term or term != _normalise_text(term):
        raise TaxonomyError(f"{where}: {term!r} must be non-empty, lowercase (casefolded) and whitespace-normalised")
    if len(term) > MAX_INTEREST_LENGTH:
        raise TaxonomyError(f"{where}: {term!r} is longer than {MAX_INTEREST_LENGTH} characters")
    return term


def _build(document: object, source: str) -> Taxonomy:
    """Validate a decoded taxonomy document and build the lookup table."""
    if not isinstance(document, dict):
        raise TaxonomyError(f"{source}: top level must be an object")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TaxonomyError(f"{source}: 'version' must be a positive integer")
    categories = document.get("categories")
    if not isinstance(categories, dict) or not categories:
        raise TaxonomyError(f"{source}: 'categories' must be a non-empty object")

    # lookup key -> (category label, canonical interest, term as written)
    owners: dict[str, tuple[str, str, str]] = {}
    labels: set[str] = set()
    interest_count = 0
    synonym_count = 0

    for cat_key, body in categories.items():
        where = f"{source}: category {cat_key!r}"
        _check_term(cat_key, where)
        if not isinstance(body, dict):
            raise TaxonomyError(f"{where}: must be an object")
        label = _check_term(body.get("label"), f"{where} label")
        if OTHER_CATEGORY in (cat_key, label):
            raise TaxonomyError(f"{where}: {OTHER_CATEGORY!r} is reserved for unknown interests")
        if label in labels:
            raise TaxonomyError(f"{where}: duplicate category label {label!r}")
        labels.add(label)
        interests = body.get("interests")
        if not isinstance(interests, dict) or not interests:
            raise TaxonomyError(f"{where}: 'interests' must be a non-empty object")

        for canonical, synonyms in interests.items():
            _check_term(canonical, f"{where} interest")
            if not isinstance(synonyms, list):
                raise TaxonomyError(f"{where}: synonyms of {canonical!r} must be a list of strings")
            interest_count += 1
            synonym_count += len(synonyms)
            for raw_term in (canonical, *synonyms):
                term = _check_term(raw_term, f"{where} interest {canonical!r}")
                key = _lookup_key(term)
                previous = owners.get(key)
                if previous is not None:
                    prev_label, prev_canonical, prev_term = previous
                    if prev_label != label:
                        raise TaxonomyError(
                            f"{source}: {term!r} maps to two categories: "
                            f"{prev_label!r} (as {prev_term!r} "
                            f"under {prev_canonical!r}) "
                            f"and {label!r} (under {canonical!r})"
                        )
                    raise TaxonomyError(
                        f"{source}: duplicate term {term!r} in category {label!r} "
                        f"(under {canonical!r}; already {prev_term!r} "
                        f"under {prev_canonical!r})"
                    )
                owners[key] = (label, canonical, term)

    return Taxonomy(
        version=version,
        terms=types.MappingProxyType({key: owner[0] for key, owner in owners.items()}),
        category_labels=frozenset(labels),
        interest_count=interest_count,
        synonym_count=synonym_count,
    )


def _load_file(path: pathlib.Path) -> Taxonomy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaxonomyError(f"{path}: cannot read taxonomy file: {exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaxonomyError(f"{path}: invalid JSON: {exc}") from exc
    return _build(document, str(path))


@functools.lru_cache(maxsize=1)
def _load_default() -> Taxonomy:
    return _load_file(DEFAULT_TAXONOMY_PATH)


def load_taxonomy(path: pathlib.Path | None = None) -> Taxonomy:
    """Load and validate a taxonomy file.

    With no ``path`` the packaged ``data/taxonomy.json`` is loaded once and
    cached for the life of the process; an explicit ``path`` is read afresh on
    every call.

    Raises:
        TaxonomyError: the file is unreadable, not valid JSON, malformed, or a
            term (canonical interest or synonym, compared after folding
            hyphens/underscores to spaces) appears more than once - in
            particular when it maps to two different categories.
    """
    if path is None:
        return _load_default()
    return _load_file(pathlib.Path(path))
