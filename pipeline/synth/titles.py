"""Made-up "Artist - Title" names for the built-in songs: deterministic for a seed, never shared
between splits, safe as folder names."""
from __future__ import annotations

import numpy as np

from pipeline.names import SPLITS

_ADJECTIVES = (
    "Amber", "Violet", "Copper", "Velvet", "Lunar", "Quiet", "Neon", "Marble", "Saffron", "Cinder",
    "Polar", "Indigo", "Tidal", "Cobalt", "Juniper", "Brindle", "Paper", "Woollen", "Silver",
    "Crooked", "Gentle", "Northern", "Scarlet", "Tangled", "Wandering", "Dusky", "Hazel", "Ivory",
)
_GROUPS = (
    "Orchard", "Foxes", "Engines", "Harbour", "Satellites", "Lanterns", "Gardeners", "Signals",
    "Weavers", "Ferns", "Cartographers", "Hymnals", "Bicycles", "Moths", "Telegraphs", "Otters",
    "Almanacs", "Kites", "Ferries", "Lighthouses", "Thistles", "Comets", "Pelicans", "Quarries",
)
_GIVEN = (
    "Ada", "Bram", "Cleo", "Dario", "Edith", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Kaia",
    "Lionel", "Maren", "Nico", "Odile", "Pavel", "Rosa", "Silas", "Tilde", "Ulric", "Vera", "Wim",
)
_SURNAMES = (
    "Ashdown", "Brightwater", "Corvale", "Dunmore", "Elsworth", "Fairhold", "Greyling", "Hollin",
    "Ivers", "Kestrell", "Larkspur", "Merriman", "Northcote", "Ollerton", "Pellow", "Quennell",
    "Rookwood", "Stavely", "Thornbury", "Underhill", "Vantongeren", "Wetherby",
)
_TITLE_ADJ = (
    "Slow", "Bright", "Hidden", "Paper", "Golden", "Distant", "Broken", "Silent", "Electric",
    "Borrowed", "Endless", "Secret", "Winter", "Summer", "Falling", "Restless", "Hollowed", "Open",
)
_TITLE_NOUN = (
    "Rivers", "Lights", "Mornings", "Windows", "Machines", "Letters", "Horizons", "Gardens",
    "Echoes", "Stations", "Mirrors", "Tides", "Signals", "Streets", "Harbours", "Fields", "Clocks",
    "Wires", "Shadows", "Rooftops",
)
_TITLE_VERB = (
    "Follow", "Carry", "Remember", "Chase", "Hold", "Count", "Paint", "Forget", "Answer", "Call",
)

# The forms of a name: a template and, for each of its blanks, the words that may fill it.
_ARTISTS = (
    ("{} {}", _ADJECTIVES, _GROUPS),
    ("The {} {}", _ADJECTIVES, _GROUPS),
    ("{} {}", _GIVEN, _SURNAMES),
)
_TITLES = (
    ("{} {}", _TITLE_ADJ, _TITLE_NOUN),
    ("{} The {}", _TITLE_VERB, _TITLE_NOUN),
    ("{} Of {}", _TITLE_NOUN, _TITLE_NOUN),
)


def song_names(split: str, count: int, seed: int) -> list[str]:
    """`count` made-up "Artist - Title" names for a split, deterministic for `seed`.

    The three splits take interleaved entries of one de-duplicated sequence (train 0, 3, 6, ...;
    valid 1, 4, 7, ...; test 2, 5, 8, ...), so they never share a name whatever the counts. Names use
    letters and spaces only, with one " - " between artist and title: safe as folder names.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    offset = SPLITS.index(split)
    needed = offset + 3 * (count - 1) + 1 if count else 0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x50_4E_41_4D]))
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < needed:
        name = f"{_compose(rng, _ARTISTS)} - {_compose(rng, _TITLES)}"
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return names[offset::3][:count]


def _compose(rng: np.random.Generator, forms) -> str:
    """One of `forms` (a template and the word lists that fill it), with a word drawn from each list
    in turn."""
    template, *lists = forms[int(rng.integers(len(forms)))]
    return template.format(*[words[int(rng.integers(len(words)))] for words in lists])
