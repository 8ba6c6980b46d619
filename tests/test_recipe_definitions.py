"""Recipe definitions: the recipes file, phrases, templates, collisions and message matching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recipes.config import RecipesConfigError, load_recipes
from recipes.matching import Match, MatchProblem, match
from recipes.model import BUILTIN_COMMANDS, ActionContext, ActionResult, RecipeBook
from recipes.templates import TemplateError, render_url, template_values

EXAMPLE = Path(__file__).resolve().parents[1] / "recipes.example.toml"
EXAMPLE_PARENTS = ("sales_salesforce", "it_servicenow", "files_box", "m365_graph", "sandbox_team")


def example_book() -> RecipeBook:
    return load_recipes(EXAMPLE, parent_names=EXAMPLE_PARENTS, reserved_phrases=BUILTIN_COMMANDS)


def load(tmp_path: Path, text: str, parents: tuple[str, ...] = ("crm",)) -> RecipeBook:
    path = tmp_path / "recipes.toml"
    path.write_text(text)
    return load_recipes(path, parent_names=parents, reserved_phrases=BUILTIN_COMMANDS)


def recipe(
    key: str = "add_deal",
    phrase: str = "add deal {name} {amount:number}",
    url: str = "{connection.api_base_url}/deals",
    *,
    parent: str = "crm",
    method: str = "POST",
    body: str = 'body = { name = "{name}", amount = "{amount}" }',
    extra: str = "",
    result: str = "",
) -> str:
    """One [recipes.<key>] table; the arguments replace its parts."""
    return (
        f'[recipes.{key}]\nname = "Add deal"\nphrase = "{phrase}"\nparent = "{parent}"\n{extra}\n'
        f'[recipes.{key}.action]\nmethod = "{method}"\nurl = "{url}"\n{body}\n'
        f'[recipes.{key}.result]\nverb = "Added"\n{result}\n'
    )


def refused(tmp_path: Path, text: str, parents: tuple[str, ...] = ("crm",)) -> str:
    with pytest.raises(RecipesConfigError) as raised:
        load(tmp_path, text, parents)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'recipes.toml'}: ")
    return message


# The example file


def test_example_file_loads() -> None:
    """The shipped example loads with its parents and gives usage lines and examples."""
    book = example_book()
    assert [r.key for r in book] == [
        "create_opportunity",
        "create_incident",
        "list_box_folder",
        "who_am_i",
        "sandbox_opportunity",
    ]
    opportunity = book.get("create_opportunity")
    assert opportunity is not None
    assert opportunity.usage() == "create opportunity <name> <amount: number>"
    assert opportunity.example() == 'create opportunity "Acme Corp" 5000'
    assert opportunity.verify_user_access and opportunity.parent == "sales_salesforce"
    incident = book.get("create_incident")
    assert incident is not None
    assert incident.example() == 'create incident "Printer on floor 3 is jammed"'


@pytest.mark.parametrize(
    ("text", "base", "method", "url", "body"),
    [
        (
            'create opportunity "Acme Corp" 5000',
            "https://acme.my.salesforce.com",
            "POST",
            "https://acme.my.salesforce.com/services/data/v60.0/sobjects/Opportunity",
            {
                "Name": "Acme Corp",
                "Amount": 5000,
                "StageName": "Prospecting",
                "CloseDate": "2026-12-31",
            },
        ),
        (
            'create incident "Printer on floor 3 is jammed"',
            "https://acme.service-now.com",
            "POST",
            "https://acme.service-now.com/api/now/table/incident",
            {"short_description": "Printer on floor 3 is jammed"},
        ),
        (
            'list box folder "Q1 / 2026"',
            "https://api.box.com/2.0",
            "GET",
            "https://api.box.com/2.0/folders/Q1%20%2F%202026/items",
            None,
        ),
        (
            "who am i",
            "https://graph.microsoft.com/v1.0/",
            "GET",
            "https://graph.microsoft.com/v1.0/me",
            None,
        ),
        (
            "sandbox opportunity Acme 12.5",
            "http://127.0.0.1:5001",
            "POST",
            "http://127.0.0.1:5001/api/opportunities",
            {"name": "Acme", "amount": 12.5},
        ),
    ],
)
def test_example_recipes_render(
    text: str, base: str, method: str, url: str, body: dict[str, Any] | None
) -> None:
    """Each example recipe renders its exact URL (values percent-encoded) and JSON body."""
    found = match(example_book(), text)
    assert isinstance(found, Match), found
    assert found.recipe.action is not None
    request = found.recipe.action.render(template_values(found.arguments, api_base_url=base))
    assert (request.method, request.url, request.json) == (method, url, body)


def test_example_results_render() -> None:
    """Result fields read dotted paths from the response; links fill in response fields."""
    book = example_book()
    sandbox, salesforce = book.get("sandbox_opportunity"), book.get("create_opportunity")
    assert sandbox is not None and salesforce is not None
    response = {"id": "opp-1", "created_by": {"sub": "u1", "email": "jane@example.com"}}
    shown = sandbox.result.render({}, response)
    assert shown.fields == {"Id": "opp-1", "Created by": "jane@example.com"}
    assert shown.link is None
    values = template_values({}, api_base_url="https://acme.my.salesforce.com")
    linked = salesforce.result.render(values, {"id": "006X"})
    assert linked.link == "https://acme.my.salesforce.com/006X"
    assert salesforce.result.render(values, {"errors": []}).link is None


def test_values_are_inserted_once(tmp_path: Path) -> None:
    """Braces in typed values are text, never placeholders; only argument values are encoded."""
    book = load(tmp_path, recipe(url="{connection.api_base_url}/deals/{name}?q={name}"))
    found = match(book, 'add deal "{connection.api_base_url} {0.__class__}" 1')
    assert isinstance(found, Match)
    assert found.recipe.action is not None
    values = template_values(found.arguments, api_base_url="https://crm.example/api")
    request = found.recipe.action.render(values)
    encoded = "%7Bconnection.api_base_url%7D%20%7B0.__class__%7D"
    assert request.url == f"https://crm.example/api/deals/{encoded}?q={encoded}"
    assert request.json == {"name": "{connection.api_base_url} {0.__class__}", "amount": 1}


def test_render_without_base_url_fails_clearly() -> None:
    """A connection with no API base URL cannot fill in {connection.api_base_url}."""
    with pytest.raises(TemplateError, match="no API base URL"):
        render_url("{connection.api_base_url}/me", template_values({}, api_base_url=None))


# Bad files


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A missing file is an error naming the file."""
    path = tmp_path / "absent.toml"
    with pytest.raises(RecipesConfigError, match=r"absent\.toml: cannot be read"):
        load_recipes(path, parent_names=(), reserved_phrases=())


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line."""
    message = refused(tmp_path, '[recipes.x]\nname = "X"\nphrase = create\n')
    assert "is not valid TOML" in message and "line 3" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[recipe.x]\nname = "X"\n', "unknown top-level key 'recipe'"),
        (recipe(extra='colour = "red"'), "recipes.add_deal.colour: unknown key."),
        (recipe(body='body = {}\nheaders = { A = "b" }'), "recipes.add_deal.action.headers:"),
        (recipe(result='icon = "x"'), "recipes.add_deal.result.icon: unknown key."),
        (recipe(key="Add-Deal"), "recipes.Add-Deal: recipe keys use lower-case letters"),
        (recipe(method="FETCH"), "recipes.add_deal.action.method: Input should be 'GET'"),
        (recipe(extra='verify_user_access = "yes"'), "recipes.add_deal.verify_user_access:"),
        ('[recipes.x]\nname = "X"\n', "recipes.x.phrase: is required."),
    ],
)
def test_unknown_and_invalid_keys_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    """Unknown keys (at any level) and wrongly typed values are refused, naming the key."""
    assert expected in refused(tmp_path, text)


def test_unknown_parent_is_refused(tmp_path: Path) -> None:
    """A recipe's parent must be a configured parent connection."""
    message = refused(tmp_path, recipe(parent="sales"), parents=("crm", "box"))
    assert "recipes.add_deal.parent: 'sales' is not a configured parent connection." in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (recipe(url="{connection.api_base_url}/deals/{nope}"), "action.url: {nope} is unknown"),
        (recipe(url="http://crm.example/deals"), "action.url: must start with"),
        (recipe(url="ftp://crm.example/deals"), "action.url: must start with"),
        (recipe(url="{name}/deals"), "action.url: must start with"),
        (recipe(url="{connection.api_base_url}{name}"), "action.url: must have / or ?"),
        (recipe(url="https://{name}.example/x"), "action.url: must name its https host"),
        (recipe(url="https://crm.example{name}"), "action.url: must name its https host"),
        (recipe(url="{connection.api_base_url}/{name!r}"), "action.url: {name} must be a plain"),
        (recipe(url="{connection.api_base_url}/{"), "action.url: has an unbalanced"),
        (recipe(body='body = { a = { b = ["{who}"] } }'), "action.body.a.b.0: {who} is unknown"),
        (recipe(body="body = { due = 2026-12-31 }"), "action.body.due: must be a string"),
        (recipe(method="GET"), "action.body: a GET request has no body."),
        (recipe(result='link = "{connection.api_base_url}/{res.id}"'), "result.link: {res.id}"),
        (recipe(result='link = "http://crm.example/{response.id}"'), "result.link: must start"),
        (recipe(result='fields = { Id = "a..b" }'), "result.fields.Id: 'a..b' is not a dotted"),
        (recipe(extra='secret_arguments = ["pin"]'), "secret_arguments: pin is not an argument"),
        (
            recipe(extra='secret_arguments = ["name"]', result='link = "https://x.example/{name}"'),
            "result.link: shows the secret argument name.",
        ),
        (recipe(extra="examples = { amount = 'lots' }"), "examples.amount: amount must be a"),
    ],
)
def test_bad_templates_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    """Placeholders must be phrase arguments or allowed names; URLs must target a fixed host."""
    message = refused(tmp_path, text)
    assert f"recipes.add_deal.{expected}" in message
    assert message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("{name} deal", "must start with a literal word"),
        ("   ", "must not be empty"),
        ("add deal {name} {amount:money}", "{amount:money} has an unknown type"),
        ("add deal {name} {name:number}", "uses the argument name twice"),
        ("add deal {Name}", "{Name}: argument names use lower-case letters"),
        ("add deal {}", "has an empty {}"),
        ("add deal-{name}", "needs a space before {name}"),
        ("add deal {name}s", "needs a space after each {argument}"),
        ("add deal {response}", "{response}: response is reserved"),
        ("add deal {name", "has an unbalanced { or }"),
    ],
)
def test_bad_phrases_are_refused(tmp_path: Path, phrase: str, expected: str) -> None:
    """A phrase starts with a literal word and has uniquely named, typed, separate arguments."""
    message = refused(tmp_path, recipe(phrase=phrase, url="https://crm.example/deals", body=""))
    assert f"recipes.add_deal.phrase: {expected}" in message


@pytest.mark.parametrize(
    "phrase", ["help {topic}", "HELP me {topic}", "Connections {name}", "personal_connections"]
)
def test_phrases_colliding_with_builtins_are_refused(tmp_path: Path, phrase: str) -> None:
    """A phrase whose first literal word is a built-in command (any case) is refused."""
    message = refused(tmp_path, recipe(phrase=phrase, url="https://crm.example/deals", body=""))
    assert "recipes.add_deal.phrase:" in message and "collides with the built-in command" in message


@pytest.mark.parametrize(
    "second",
    ["add deal {title}", "Add Deal", "add {thing}", "add deal now {name}"],
)
def test_phrases_colliding_with_other_recipes_are_refused(tmp_path: Path, second: str) -> None:
    """Two recipes whose leading words are equal, or begin one another, are refused."""
    text = recipe() + recipe(key="other", phrase=second, url="https://crm.example/x", body="")
    message = refused(tmp_path, text)
    assert "recipes.other.phrase:" in message
    assert 'collides with recipe add_deal ("add deal {name} {amount:number}")' in message


def test_distinct_leading_words_coexist(tmp_path: Path) -> None:
    """Recipes sharing a first word but not their leading words load side by side."""
    text = recipe() + recipe(key="add_task", phrase="add task {title}", body="")
    assert len(load(tmp_path, text)) == 2


# Code recipes


async def make_deal(context: ActionContext) -> ActionResult:
    response = await context.http("POST", f"{context.api_base_url}/deals", context.arguments)
    return ActionResult(fields={"Id": str(response.json["id"])})


def test_code_recipes_register() -> None:
    """A code recipe registers with a handler and parses its phrase like a configured one."""
    book = RecipeBook(parent_names=("crm",), reserved_phrases=BUILTIN_COMMANDS)
    registered = book.register(
        "close_deal",
        name="Close deal",
        phrase="close deal {id:integer}",
        parent="crm",
        verify_user_access=True,
        handler=make_deal,
        secret_arguments=["id"],
    )
    assert registered.handler is make_deal and registered.action is None
    assert registered.example() == "close deal 42"
    assert registered.public_arguments({"id": 7}) == {}
    found = match(book, "close deal 7")
    assert isinstance(found, Match) and found.arguments == {"id": 7}


@pytest.mark.parametrize(
    ("key", "phrase", "parent", "expected"),
    [
        ("add_again", "add deal now {x}", "crm", 'recipes.add_again.phrase: "add deal now"'),
        ("add_deal", "close deal {x}", "crm", "recipes.add_deal: the key is already used"),
        ("helper", "help {x}", "crm", 'collides with the built-in command "help"'),
        ("closer", "close deal {x}", "sales", "recipes.closer.parent: 'sales' is not"),
        ("closer", "{x} close", "crm", "recipes.closer.phrase: must start with a literal word"),
    ],
)
def test_code_recipe_collisions_are_refused(
    tmp_path: Path, key: str, phrase: str, parent: str, expected: str
) -> None:
    """Code recipes pass the same checks as the file, and errors name the handler and key."""
    book = load(tmp_path, recipe())
    with pytest.raises(RecipesConfigError) as raised:
        book.register(
            key, name="X", phrase=phrase, parent=parent, verify_user_access=False, handler=make_deal
        )
    message = str(raised.value)
    assert message.startswith(f"{__name__}.make_deal: ") and expected in message


# Matching


def test_quoted_values_and_any_case_literals_match(tmp_path: Path) -> None:
    """Literal words match in any case; double (or curly) quotes make one value, case kept."""
    book = load(tmp_path, recipe())
    for text in ('ADD Deal "Acme Corp" 5000', "  add deal \u201cAcme Corp\u201d 5000.0 "):
        found = match(book, text)
        assert isinstance(found, Match), found
        assert found.arguments == {"name": "Acme Corp", "amount": 5000}
        assert isinstance(found.arguments["amount"], int)
    found = match(book, "add deal it's -12.25")
    assert isinstance(found, Match) and found.arguments == {"name": "it's", "amount": -12.25}


def test_missing_argument_says_what_is_needed(tmp_path: Path) -> None:
    """A missing argument names the expected arguments and shows an example."""
    found = match(load(tmp_path, recipe()), "add deal Acme")
    assert isinstance(found, MatchProblem)
    assert found.message == (
        '"add deal" needs: <name> <amount: number>. Example: add deal "Acme Corp" 5000'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lots", 'amount must be a number, not "lots"'),
        ("5,000", 'amount must be a number, not "5,000"'),
        ("1e3", 'amount must be a number, not "1e3"'),
    ],
)
def test_bad_number_says_what_is_wrong(tmp_path: Path, value: str, expected: str) -> None:
    """A number argument takes digits with an optional dot and minus, nothing else."""
    found = match(load(tmp_path, recipe()), f"add deal Acme {value}")
    assert isinstance(found, MatchProblem)
    assert found.message.startswith(expected) and "Example: add deal" in found.message


def test_bad_integer_says_what_is_wrong(tmp_path: Path) -> None:
    """An integer argument refuses a decimal."""
    book = load(tmp_path, recipe(phrase="add seats {count:integer}", body=""))
    found = match(book, "add seats 2.5")
    assert isinstance(found, MatchProblem)
    assert found.message.startswith('count must be a whole number, not "2.5"')


def test_unbalanced_quote_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    """An unclosed double quote is reported for the recipe it names; elsewhere it is no match."""
    book = load(tmp_path, recipe())
    found = match(book, 'add deal "Acme Corp 5000')
    assert isinstance(found, MatchProblem)
    assert found.message.startswith('A double quote (") is not closed. Example:')
    assert match(book, 'say "hello') is None


def test_no_recipe_words_is_no_match(tmp_path: Path) -> None:
    """A message whose first words are no recipe's leading words matches nothing."""
    book = load(tmp_path, recipe())
    for text in ("add", "add task x", "", "deal add Acme 5", '"add deal" Acme 5'):
        assert match(book, text) is None


def test_extra_argument_is_a_problem(tmp_path: Path) -> None:
    """More words than arguments is a problem that suggests quoting."""
    found = match(load(tmp_path, recipe()), "add deal Acme Corp 5000")
    assert isinstance(found, MatchProblem)
    assert found.message == (
        '"add deal" takes only: <name> <amount: number>; put a value with spaces in double '
        'quotes. Example: add deal "Acme Corp" 5000'
    )


def test_empty_quoted_value_is_a_problem(tmp_path: Path) -> None:
    """An empty quoted value is refused rather than sent."""
    found = match(load(tmp_path, recipe()), 'add deal "" 5')
    assert isinstance(found, MatchProblem) and found.message.startswith("name must not be empty")
