"""Named byte fixtures for parser tests (STYLE S9), each with a line stating its origin."""
