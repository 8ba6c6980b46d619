"""The shipped apps.example.toml is valid configuration."""

from __future__ import annotations

from pathlib import Path

from oauth.providers import load_registry

EXAMPLE = Path(__file__).resolve().parents[1] / "apps.example.toml"


def test_example_apps_file_loads() -> None:
    """Every preset in the example resolves once its secret variables are set."""
    variables = {
        name: "x"
        for name in (
            "SALESFORCE_CLIENT_SECRET",
            "SERVICENOW_CLIENT_SECRET",
            "BOX_CLIENT_SECRET",
            "GRAPH_CLIENT_SECRET",
            "ACME_CRM_CLIENT_SECRET",
            "SANDBOX_CLIENT_SECRET",
        )
    }
    registry = load_registry(EXAMPLE, variables)
    assert set(registry.providers) == {
        "salesforce",
        "servicenow",
        "box",
        "microsoft_graph",
        "acme_crm",
        "sandbox",
    }
    assert registry.display_name("acme_crm") == "Acme CRM"
    assert set(registry.parents) == {
        "sales_salesforce",
        "it_servicenow",
        "files_box",
        "m365_graph",
        "sandbox_team",
    }
    assert registry.parents["files_box"].contact == "your administrator"
    assert registry.parents["sales_salesforce"].tenant == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert registry.parents["files_box"].tenant is None
