"""Fixtures shared by the whole suite live in tests/support/, one module per server."""

pytest_plugins = [
    "tests.support.seaweed",
    "tests.support.zendesk",
    "tests.support.jira",
    "tests.support.helpdesk",
    "tests.support.freshdesk_emulator",
    "tests.support.servicenow_emulator",
    "tests.support.gateway",
    "tests.support.clamd",
    "tests.support.compat",
    "tests.support.oidc",
]
