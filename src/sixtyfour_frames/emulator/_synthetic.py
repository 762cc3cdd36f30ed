"""Deterministic, realistic-looking synthetic values.

Every value is a pure function of a seed and some text (a company name, a person's name), through
SHA-256, so the same input always gets the same enrichment and a different seed gives a different,
equally stable world. Nothing here is random in the ``random`` module's sense.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

INDUSTRIES = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Logistics",
    "Renewable Energy",
    "Retail",
    "Biotechnology",
    "Manufacturing",
    "Media & Entertainment",
    "Cybersecurity",
    "Education",
    "Real Estate",
)
CITIES = (
    "San Francisco",
    "New York",
    "Austin",
    "Boston",
    "London",
    "Berlin",
    "Paris",
    "Toronto",
    "Singapore",
    "Amsterdam",
    "Tel Aviv",
    "Sydney",
)
EMPLOYEE_COUNTS = (4, 11, 23, 37, 48, 65, 120, 340, 860, 2_400, 9_800, 31_000)
TOP_LEVEL_DOMAINS = (".com", ".com", ".io", ".ai", ".co")
FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Katherine",
    "Guido",
)
LAST_NAMES = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Johnson",
    "van Rossum",
)
TITLES = (
    "Chief Executive Officer",
    "VP of Sales",
    "Head of Marketing",
    "Chief Technology Officer",
    "Director of Operations",
    "Senior Software Engineer",
    "Product Manager",
    "Head of Partnerships",
)
TAGLINES = (
    'calls its approach "boring on purpose"',
    'describes itself as "the quiet backbone" of its market',
    'is known internally for the motto "ship, then polish"',
)
_LEGAL_SUFFIXES = re.compile(
    r"\b(inc|corp|corporation|llc|ltd|gmbh|co|sa|ag|plc)\b\.?", re.IGNORECASE
)


def digest(seed: int, *parts: object) -> int:
    """A stable 64-bit integer for ``parts`` under ``seed``."""
    text = "\x1f".join([str(seed), *(str(part) for part in parts)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def pick(options: Sequence[T], seed: int, *parts: object) -> T:
    """One of ``options``, chosen by the digest of ``parts``."""
    return options[digest(seed, *parts) % len(options)]


def slug(text: str, *, separator: str = "") -> str:
    """Lower-case ASCII letters and digits only: ``"Acme Corp."`` → ``"acme"``."""
    without_suffix = _LEGAL_SUFFIXES.sub(" ", text)
    words = re.findall(r"[a-z0-9]+", without_suffix.lower())
    return separator.join(words)


def company_domain(company_name: str, seed: int) -> str:
    """A plausible web domain for a company; every block derives it the same way."""
    base = slug(company_name) or f"company{digest(seed, company_name) % 10_000}"
    return base + pick(TOP_LEVEL_DOMAINS, seed, "tld", company_name)


def company_description(company_name: str, seed: int) -> str:
    """Free text with commas always, and newlines and double quotes for about a third of companies.

    Real result CSVs have such multi-line quoted cells, so parsers must be exercised by them.
    """
    industry = pick(INDUSTRIES, seed, "industry", company_name)
    city = pick(CITIES, seed, "city", company_name)
    text = f"{company_name} is a {industry.lower()} company, headquartered in {city}."
    if digest(seed, "multiline", company_name) % 3 == 0:
        tagline = pick(TAGLINES, seed, "tagline", company_name)
        text += f"\nIt {tagline}, and has grown every year since."
    return text


def person_name(seed: int, *parts: object) -> tuple[str, str]:
    """A (first, last) name pair."""
    return pick(FIRST_NAMES, seed, "first", *parts), pick(LAST_NAMES, seed, "last", *parts)


def split_full_name(full_name: str) -> tuple[str, str]:
    """``"Ada Lovelace"`` → ``("Ada", "Lovelace")``; a single word is a first name."""
    first, _, last = full_name.strip().partition(" ")
    return first, last


def email_address(first: str, last: str, domain: str) -> str:
    """``first.last@domain``, lower-case, letters only."""
    local = ".".join(part for part in (slug(first), slug(last)) if part) or "contact"
    return f"{local}@{domain}"


def phone_number(seed: int, *parts: object) -> str:
    """A North American number in the 555-01xx range reserved for fiction."""
    value = digest(seed, "phone", *parts)
    area = (201, 312, 415, 512, 617, 646, 737)[value % 7]
    return f"+1 {area}-555-01{value // 7 % 100:02d}"


def person_linkedin_url(first: str, last: str, seed: int) -> str:
    """A LinkedIn-style profile URL with a short stable suffix."""
    handle = "-".join(part for part in (slug(first), slug(last, separator="-")) if part)
    return f"https://www.linkedin.com/in/{handle}-{digest(seed, 'li', first, last) % 0xFFFF:04x}"


def person_summary(first: str, last: str, title: str, company: str, seed: int) -> str:
    """A short profile summary; sometimes two lines with a quoted phrase, like real ones."""
    text = (
        f"{first} {last} works as {title} at {company}, based in {pick(CITIES, seed, first, last)}."
    )
    if digest(seed, "summary", first, last, company) % 2 == 0:
        text += f'\nColleagues describe {first} as "relentlessly practical".'
    return text
