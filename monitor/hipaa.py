"""The HIPAA Security Rule (45 CFR Part 164, Subpart C) references medmon's findings and audit
report name, with each standard's or implementation specification's title."""

from __future__ import annotations

#: Reference -> title, in the order of the regulation.
STANDARDS: dict[str, str] = {
    "164.308(a)(1)": "Security management process",
    "164.308(a)(1)(ii)(A)": "Risk analysis",
    "164.308(a)(1)(ii)(B)": "Risk management",
    "164.308(a)(1)(ii)(D)": "Information system activity review",
    "164.308(a)(3)": "Workforce security",
    "164.308(a)(4)": "Information access management",
    "164.308(a)(5)(ii)(B)": "Protection from malicious software",
    "164.308(a)(6)": "Security incident procedures",
    "164.308(a)(8)": "Evaluation",
    "164.310(a)(1)": "Facility access controls",
    "164.310(d)(1)": "Device and media controls",
    "164.312(a)(1)": "Access control",
    "164.312(b)": "Audit controls",
    "164.312(c)(1)": "Integrity",
    "164.312(d)": "Person or entity authentication",
    "164.312(e)(1)": "Transmission security",
    "164.312(e)(2)(i)": "Integrity controls (transmission)",
    "164.312(e)(2)(ii)": "Encryption (transmission)",
    "164.316(b)": "Documentation",
    "164.316(b)(1)": "Documentation",
    "164.316(b)(2)": "Documentation: time limit, availability, updates",
}

#: The references the audit report always lists (with what medmon shows for each), whether
#: or not an exception names them.
REPORT_SECTIONS: tuple[str, ...] = (
    "164.308(a)(1)(ii)(A)",
    "164.308(a)(1)(ii)(B)",
    "164.312(a)(1)",
    "164.312(b)",
    "164.312(c)(1)",
    "164.312(d)",
    "164.312(e)(1)",
    "164.316(b)",
)


def normalize(ref: str | None) -> str:
    """A reference as written here: no '45 CFR', no '§', no spaces."""
    if not ref:
        return ""
    text = ref.replace("45 CFR", "").replace("§", "").replace(" ", "")
    return text.strip()


def title(ref: str | None) -> str:
    """The title of a reference, or of the nearest enclosing one ('' when unknown)."""
    ref = normalize(ref)
    while ref:
        if ref in STANDARDS:
            return STANDARDS[ref]
        cut = ref.rfind("(")
        if cut <= 0:
            break
        ref = ref[:cut]
    return ""
