"""Every sentence the product says to a person or writes to the log, in one place.

Keeping them together keeps the wording consistent and reviewable. Log lines never carry
tokens, authorization codes, states or request bodies.
"""

# --- Start-up and storage -------------------------------------------------------------------
NO_STORE_CONFIGURED = (
    "No database is configured: set MONGODB_URI to your MongoDB server, or install the "
    'embedded local store with `pip install ".[local]"`.'
)
EMBEDDED_STORE_TIMEOUT = "The embedded database did not become ready within 30 seconds."
EMBEDDED_STORE_FAILED = "The embedded database could not start: {detail}"
EMBEDDED_STORE_IN_USE = (
    "The embedded database in {folder} belongs to process {pid}, which still runs (a bot or an "
    "operator command): try again once it answers or has stopped, or set another DATA_DIR."
)
EMBEDDED_STORE_STALE_STUCK = (
    "The embedded database process {pid} left running on {folder} by a stopped bot could not be "
    "stopped: stop it yourself, then start again."
)
EMBEDDED_STORE_LOST = (
    "The embedded database stopped and could not be restarted after {attempts} attempts."
)
EMBEDDED_STORE_MEMORY_LOST = (
    "The in-memory embedded database stopped (exit status {status}); its data is gone."
)
STORE_UNREACHABLE = "The database at MONGODB_URI could not be reached: {detail}"

LOG_STORE_EXTERNAL = "Store: MongoDB from MONGODB_URI, database %r"
LOG_STORE_EMBEDDED = "Store: embedded MongoDB-compatible server (data in %s), database %r"
LOG_STORE_EMBEDDED_MEMORY = "Store: embedded MongoDB-compatible server in memory, database %r"
LOG_EMBEDDED_STORE_KILLED = "The embedded database did not stop in time and was killed"
LOG_EMBEDDED_STORE_STALE = (
    "Stopping embedded database process %d left running on %s by process %s, which no longer runs"
)
LOG_EMBEDDED_STORE_EXITED = (
    "The embedded database stopped unexpectedly (exit status %s); restarting it on port %d"
)
LOG_EMBEDDED_STORE_RESTARTING = "Restarting the embedded database (attempt %d of %d) on port %d"
LOG_EMBEDDED_STORE_RESTART_FAILED = "The embedded database did not restart (attempt %d of %d): %s"
LOG_EMBEDDED_STORE_RESTARTED = "The embedded database runs again (process %s) on port %d"
LOG_STORE_LOST_EXITING = (
    "%s The bot stops with exit status 1 so that its process manager can restart it."
)
LOG_AUTH_OFF = (
    "Bot Framework authentication is OFF because no MicrosoftAppId is set: "
    "for local use only (Agents Playground, tests)"
)
LOG_AUTH_ON = "Bot Framework authentication is on for app id %s (%s)"
LOG_LISTENING = "Listening on http://%s:%d/api/messages"

# --- HTTP endpoint ----------------------------------------------------------------------------
HTTP_NOT_JSON_MEDIA_TYPE = "Send the activity as JSON (Content-Type: application/json)."
HTTP_INVALID_JSON = "The request body is not valid JSON."
HTTP_NOT_AN_ACTIVITY = "The request body must be one activity: a JSON object."
HTTP_MISSING_FIELD = "The activity has no {field}."
HTTP_UNAUTHORIZED = "The request is not authorized: a valid Bot Framework token is required."
HTTP_AUTH_UNAVAILABLE = (
    "The bot cannot check tokens right now (signing keys unavailable); try again shortly."
)
HTTP_INTERNAL_ERROR = "The bot could not handle this activity."
LOG_REJECTED_TOKEN = "Rejected a request with an invalid Bot Framework token: %s"  # noqa: S105
LOG_TURN_ERROR = "Unhandled error in a turn (activity type %s)"
LOG_SIGNING_KEYS_UNAVAILABLE = "Could not fetch Bot Framework signing keys from %s: %s"

# --- Hostile or oversized input ----------------------------------------------------------------
HTTP_BODY_TOO_LARGE = "The request body is too large: at most {kb} KB is accepted."
HTTP_UNREADABLE_BODY = "The request body could not be read (check its Content-Encoding)."
HTTP_NESTED_TOO_DEEPLY = "The request body is nested too deeply: at most {limit} levels."
HTTP_INVALID_FIELD = "The activity's {field} is not a valid id or name."
MESSAGE_TOO_LONG = (
    "That message is too long for me to read (over {limit:,} characters). Type **help** to see "
    "what I can do."
)
LOG_MESSAGE_TOO_LONG = "Did not read a message of %d characters (the limit is %d)"

# --- Conversation -----------------------------------------------------------------------------
DID_NOT_UNDERSTAND = "Sorry, I didn't understand that. Type **help** to see what I can do."
HTTP_ACTIVITY_REFUSED = (
    "This bot does not act on this request: identity is taken only from Microsoft Teams, and "
    "without authentication replies go only to this machine."
)
LOG_ACTIVITY_REFUSED = "Refused an activity: %s"
SIGNIN_CODE_PRIVATE_CHAT_ONLY = (
    "Sign-ins are finished only in your 1:1 chat with me: open it and send your code there. "
    "Nothing was changed."
)
ALREADY_DELETED = "That connection was deleted."
LOG_SETTLE_DEFERRED = "Settling a connection change is deferred to the next sweep"
LOG_REVOKE_RETRY = "Revoking tokens at %s failed (attempt %d); it will be tried again"
LOG_TURN_OVER_BUDGET = "A %s turn took longer than %.0f s; the person was asked to try again"
LOG_SWEEP_JOB_FAILED = "A sweep job failed; the next round tries again"
LOG_SWEEP_FAILED = "The sweep round failed; the next round tries again"
LOG_COULD_NOT_TELL = "Could not tell the person about the failed turn"
TENANT_NOT_ALLOWED = (
    "Sorry, this bot isn't available for your organization. Ask your administrator if you "
    "think it should be."
)
TURN_FAILED = "Sorry, something went wrong on my side. Please try again in a moment."
# How a notice in a shared chat addresses a person whose name Teams did not send.
GREETING_WITHOUT_NAME = "Hi"
SENT_TO_PRIVATE_CHAT = (
    "{name}, I've sent your personal connections to you in a private chat with me."
)
PRIVATE_CHAT_UNAVAILABLE = (
    "{name}, your connections are private, so I only show them in a 1:1 chat, but I can't "
    "message you there yet. Install me for yourself first: open **Apps** in Teams, find "
    "**Runtime connections**, select **Add**, then type **personal_connections** in our chat."
)
PRIVATE_CHAT_ONLY = (
    "Your connections are private: open your 1:1 chat with me and type "
    "**personal_connections** there."
)
LOG_UNMATCHED_TEXT = "No command matched a message (%d characters)"
LOG_UNKNOWN_INVOKE = "Answered an unknown invoke %r with 200"
LOG_UNKNOWN_VERB = "Unknown card action verb %r"
LOG_TENANT_REFUSED = "Refused an activity from a tenant outside the allow list"
LOG_PRIVATE_CHAT_FAILED = "Could not open a 1:1 chat with a user: %s"

# --- Connections --------------------------------------------------------------------------------
CONNECTIONS_TITLE = "Your personal connections"
CONNECTIONS_EMPTY = (
    "You have no personal connections yet. A connection appears here the first time a "
    "recipe asks you to sign in to an app with your own account."
)
CONNECTIONS_PICK_PLACEHOLDER = "Choose a connection"
CONNECTIONS_PICK_REQUIRED = "Choose a connection first."
CONNECTIONS_PAGE = "Showing {first}–{last} of {total}"
CONNECTIONS_HINT = (
    "Disconnect signs you out and keeps the connection; you sign in again the next time a "
    "recipe needs it. Delete removes it."
)
DISCONNECTED = "Disconnected {label}."
ALREADY_DISCONNECTED = "{label} was already disconnected."
DELETED = "Deleted {label}."
DELETE_CANCELLED = "Nothing was deleted."
CONFIRM_DELETE_TITLE = "Delete this connection?"
CONFIRM_DELETE_TEXT = (
    "{label} will be removed. The next time a recipe needs it, you will be asked to sign in again."
)
CHOOSE_A_CONNECTION = "Choose a connection in the list first, then press the button."
CONNECTION_NOT_FOUND = (
    "That connection isn't in your list any more. Here are the connections you have now."
)
CARD_ACTION_UNKNOWN = "That button isn't something I know how to handle any more."
STATUS_LABELS = {
    "connected": "Connected",
    "disconnected": "Disconnected",
    "needs_reauth": "Needs sign-in",
}

# --- Help -----------------------------------------------------------------------------------------
HELP_TITLE = "What I can do"
HELP_INTRO = (
    "I run your team's recipes. When a recipe needs to act as you, I ask you to sign in to "
    "that app once with your own account."
)
HELP_COMMANDS = (
    ("personal_connections", "See your connections to other apps; disconnect or delete one."),
    ("connections", "The same as personal_connections."),
    ("help", "Show this card."),
)
HELP_PERSONAL_ACCOUNTS = "Personal accounts"

# --- Sign-in ---------------------------------------------------------------------------------
LOGIN_CARD_TEXT = "Sign in to {app} to continue"
LOGIN_CARD_DETAIL = (
    "Sign in with your own {app} account. Afterwards, type the 6-digit code shown in the "
    "sign-in window here if Teams asks for it."
)
LOGIN_CARD_BUTTON = "Sign in"
LOGIN_CARD_SENT_PRIVATELY = (
    "{name}, I've sent you a private sign-in card for {app} in our 1:1 chat."
)
RECONNECT_SENT = "I've sent you a sign-in card for {app} below."
RECONNECT_NOT_POSSIBLE = (
    "{label} can't be reconnected: its app connection was removed. Ask your administrator."
)
RECONNECT_NOT_NEEDED = "{label} is connected; there is nothing to reconnect."
SIGNIN_CONNECTED = "Your {app} account {account} is connected."
SIGNIN_ALREADY_USED = "That code was already used: your {app} account {account} is connected."
SIGNIN_WRONG_CODE = (
    "That code doesn't match your sign-in, so I cancelled it to be safe. Please sign in again "
    "from a new sign-in card."
)
SIGNIN_CANCELLED = "Sign-in cancelled. Nothing was connected."
SIGNIN_FAILURES = {
    "invalid_state": "This sign-in link is not valid or was already used. Start again from Teams.",
    "expired_state": "This sign-in link has expired. Start again from Teams.",
    "missing_code": "The app did not send an authorization code. Start again from Teams.",
    "invalid_code": "The app did not accept the sign-in. Start again from Teams.",
    "access_denied": "You chose not to allow access, so nothing was connected.",
    "provider_error": "The app could not complete the sign-in right now. Try again later.",
    "storage_error": "The sign-in could not be saved. Try again in a moment.",
}
SIGNIN_PAGE_TITLE = "Signed in to {app}"
SIGNIN_PAGE_CODE = (
    "If this window doesn't close by itself, go back to Teams and type this code in your chat "
    "with the bot:"
)
SIGNIN_PAGE_FAILED_TITLE = "Sign-in not completed"
SIGNIN_PAGE_PARENT = (
    "Go back to the command line to check the account and accept it as the parent connection."
)
SIGNIN_PAGE_NO_RESULT = "There is no sign-in to finish here. Start again from Teams."
SIGNIN_PAGE_CODE_PRIVATE = (
    "Type it only in your own chat with the bot, and never give it to anyone, even someone who "
    "says they need it to help you."
)
SIGNIN_PAGE_SHOWN_TITLE = "Code already shown"
SIGNIN_PAGE_ALREADY_SHOWN = (
    "The code for this sign-in was already shown once and isn't shown again. If you typed it, "
    "look in your chat with the bot: it tells you when you're connected. Otherwise start the "
    "sign-in again from Teams."
)
SIGNIN_PAGE_NOT_FOUND = "There is nothing here. Start again from Teams."
LOG_SIGNIN_REJECTED = "Sign-in rejected by %s: %s"
LOG_PROVIDER_UNAVAILABLE = "Provider %s unavailable: %s"
LOG_SIGNIN_FAILED = "Sign-in callback failed: %s"

# --- Tokens ------------------------------------------------------------------------------------
LOG_REFRESH_REJECTED = "Refresh refused by %s (%s): the connection needs sign-in"
LOG_REVOKE_FAILED = "Revocation at %s failed; the local change stands"

# --- Recipes -----------------------------------------------------------------------------------
RECIPE_CREDITED = "{verb} in {app} as {account}"
RECIPE_OUTCOME_UNKNOWN = (
    "{recipe} was interrupted while it was talking to {app}, so I can't tell whether it was "
    "done. I won't send it again: check in {app}, or ask {contact}."
)
LOG_RUN_RESUMED_AFTER_CRASH = "Recipe %s: resuming a run stranded before its action was sent"
RECIPE_OTHER_TENANT = (
    "{recipe} isn't available to your organization: its {app} app connection serves another "
    "organization. Nothing was done. Ask your administrator to set up a connection for yours."
)
RECIPE_PARENT_REMOVED = (
    "{recipe} can't run: its {app} app connection was removed. Ask {contact} to set it up again."
)
RECIPE_PARENT_NEEDS_AUTH = (
    "{recipe} can't run: its {app} app connection needs to be authorized again. Ask {contact}."
)
RECIPE_SIGN_IN_NEEDED = (
    "{recipe} acts as you in {app}, so you need to sign in with your own {app} account first. "
    "I've sent you a sign-in card in our 1:1 chat; once you're connected, it continues by itself."
)
RECIPE_PROVIDER_ERROR = "{app} did not accept the request: {detail}"
RECIPE_URL_REFUSED = (
    "Nothing was sent: with these values the request would leave the address this recipe may "
    "use in {app}. Check the values and try again."
)
# Followed by ". Example: …" (recipes.matching).
RECIPE_ARGUMENT_DOT_SEGMENT = (
    "{name} can't be {value}: it goes into a web address, where dots on their own mean "
    '"this folder" or "the folder above"'
)
RECIPE_PROVIDER_UNAVAILABLE = "{app} can't be reached right now. Please try again later."
RECIPE_TIMEOUT = (
    "{app} didn't answer in time. It may or may not have done it: check in {app} before trying "
    "again."
)
RECIPE_FAILED_TITLE = "{recipe} didn't complete"
RECIPE_WAITING_TITLE = "{recipe} is waiting for your sign-in"
RECIPE_WORKING = "Working on {recipe}…"
RECIPE_SIGN_IN_EXPIRED = (
    "{recipe} didn't run: the sign-in wasn't completed within 10 minutes. Run the command again "
    "when you're ready."
)
RECIPE_SIGN_IN_ABANDONED = "{recipe} didn't run because the sign-in was cancelled."
RECIPE_RECIPE_GONE = "A recipe that was waiting for your sign-in no longer exists."
HELP_RECIPES = "Recipes"
LOG_RECIPE_DUPLICATE = "Ignored a repeated delivery of an activity that already ran %s"
LOG_RECIPE_FAILED = "Recipe %s failed: %s"
LOG_RUN_LEFT_TO_SWEEPER = (
    "The store did not answer in time to record a recipe run (%s); the sweeper ends it"
)
LOG_RECIPE_URL_REFUSED = "Recipe %s: request not sent, its URL %s"

# recipes
# Whom a person is told to ask when a recipe's app names no contact.
RECIPE_CONTACT_UNKNOWN = "your administrator"

# Card buttons and labels
BUTTON_DISCONNECT = "Disconnect"
BUTTON_DELETE = "Delete"
BUTTON_RECONNECT = "Reconnect"
BUTTON_PREVIOUS = "Previous"
BUTTON_NEXT = "Next"
BUTTON_CONFIRM_DELETE = "Confirm"
BUTTON_CANCEL = "Cancel"
BUTTON_OPEN_IN_APP = "Open in {app}"
CONNECTION_PICKER_LABEL = "Connection"
# A connection named in sentences ("Box (jane@contoso.com)") and in the picklist.
CONNECTION_LABEL = "{app} ({account})"
CONNECTION_CHOICE = "{app} — {account} ({status})"

# operator command line (admin, app start-up, sandbox demo)
START_FAILED = "Cannot start: {error}"
CLI_CANNOT_RUN = "Cannot run: {error}"
CLI_REENCRYPTED = "{collection}: {changed} re-encrypted with key {key_id}"
CLI_PARENT_NOT_FOUND = "No parent connection has the id {id}."
CLI_PARENT_DELETED = "Deleted parent {id}; its runtime connections stay stored."
CLI_RECIPE_NOT_IN_FILE = "not in the recipes file"
CLI_RECIPE_DIFFERS = "differs from the file (the database wins)"
CLI_RECIPE_ROW = "{key}\tdatabase: {database}\tfile: {file}{note}"
CLI_RECIPE_NOT_FOUND = "No recipe has the key {key}."
CLI_RECIPE_TOGGLED = "{key}: Verify user access at runtime is now {value}."
CLI_PARENT_NOT_FOR_TENANT = "No parent connection with the id {parent} serves tenant {tenant}."
CLI_RUNTIME_EXISTS = "That person already has a runtime connection for this parent."
CLI_CONNECTION_NOT_FOUND = "No connection has the id {id}; nothing deleted."
CLI_CONNECTION_DELETED = "Deleted {row}"
CLI_SERVING_AUTH_PAGES = "(No bot answers at {base_url}: serving its sign-in pages here.)"
CLI_PARENT_NOT_CONFIGURED = "No parent {name!r} is configured in APPS_FILE [parents]."
CLI_PARENT_SIGN_IN_URL = (
    "Open this URL in a browser and sign in to {app} with the account the parent connection "
    "should use (valid for 10 minutes):\n{url}"
)
CLI_PARENT_SIGN_IN_INCOMPLETE = "The sign-in did not complete; nothing was stored."
CLI_PARENT_SIGNED_IN = "Signed in to {app} as {account}."
CLI_PARENT_STORE_PROMPT = "Store this account as the parent connection? [y/N] "
CLI_PARENT_NOT_STORED = "Not stored."
CLI_PARENT_STORED = "Stored parent connection {id} ({app}, {account}) for tenant {tenant}."
CLI_PARENT_ONE_TENANT = "A parent serves exactly one tenant id; nothing was done."
CLI_PARENT_TENANT_MISMATCH = (
    "APPS_FILE says this parent serves tenant {configured}, not {option}; nothing was done."
)
CLI_PARENT_TENANT_PROMPT = "Which Microsoft Entra tenant id may use this parent connection? "
CLI_PARENT_NO_TENANT = "(no tenant: authorize again)"
CLI_PARENT_CHILDREN = "{count} runtime connection(s)"
SANDBOX_NOT_SIGNED_IN = "not signed in yet"
LOG_SANDBOX_STARTED = "Sandbox provider on %s; bot on %s/api/messages"
LOG_SANDBOX_PLAYGROUND = "Start the Agents Playground with: %s"
MANIFEST_FAILED = "error: {error}"
MANIFEST_BOT_ID_MISSING = "Missing bot id: pass --bot-id or set MicrosoftAppId (or APP_ID)."
MANIFEST_BASE_URL_MISSING = "Missing public base URL: pass --base-url or set {variable}."
MANIFEST_VERSION_INVALID = "The version must be MAJOR.MINOR.PATCH, got {version!r}."
MANIFEST_BOT_ID = "bot id (--bot-id)"
MANIFEST_APP_ID = "app id (--app-id)"
MANIFEST_GUID_INVALID = (
    "The {what} must be a GUID like 00000000-0000-0000-0000-000000000000, got {value!r}."
)
MANIFEST_BASE_URL_NOT_ABSOLUTE = (
    "The public base URL (--base-url) must be an absolute http(s) URL, got {url!r}."
)
MANIFEST_BASE_URL_EXTRAS = (
    "The public base URL (--base-url) must not carry credentials, a query or a fragment."
)
MANIFEST_BASE_URL_NOT_HTTPS = (
    "The public base URL (--base-url) must use https for {host}; plain http is only allowed for "
    "localhost and 127.0.0.1."
)
MANIFEST_BASE_URL_PORT = "The public base URL (--base-url) has an invalid port: {url!r}."

# configuration errors
# Texts used with .format() write a literal brace twice ({{ }}); the others write it once.
SETTING_INVALID = "The setting {variable} is invalid: {detail}."
SETTINGS_INVALID = "{detail}."
SETTING_INVALID_DETAIL = "is invalid"
SETTING_NOT_A_FILE = "{path} is not a file"
SETTING_ANY_TENANT_ALONE = "* (any tenant) cannot be combined with tenant ids"
SETTING_NO_CHANNEL = "list at least one channel id, e.g. msteams"
SETTING_APP_CREDENTIALS_REQUIRED = (
    "The setting MicrosoftAppPassword (APP_PASSWORD) is required when MicrosoftAppId is set"
)
SETTING_APP_TENANT_REQUIRED = (
    "The setting MicrosoftAppTenantId (APP_TENANTID) is required for a {app_type} bot"
)
SETTING_HOST_REFUSED = (
    "HOST={host} is refused while authentication is off (no MicrosoftAppId): anyone who can "
    "reach the bot could act as anyone. Set MicrosoftAppId and MicrosoftAppPassword, or serve on "
    "HOST=localhost"
)
SETTING_TENANTS_REQUIRED = (
    "The setting ALLOWED_TENANT_IDS is required when MicrosoftAppId is set: list the tenant ids "
    "that may use the bot, or * to allow any tenant (multi-tenant)"
)
SETTING_MONGODB_REQUIRED = (
    "The setting MONGODB_URI is required when MicrosoftAppId is set: a production bot never "
    "falls back to the embedded local store"
)
ENCRYPTION_KEYS_MISSING = (
    "Set {setting}: tokens cannot be stored without an encryption key in production (generate "
    "one with `python -m admin tokens new-key`)."
)
ENCRYPTION_KEY_FILE_INSECURE = (
    "The token encryption key file {path} is accessible by group or others (mode {mode}); run "
    "`chmod 600 {path}` and start again."
)
ENCRYPTION_KEY_FILE_NOT_KEYS = "The token encryption key file {path} is not a key file"
ENCRYPTION_KEY_FILE_EMPTY = "The token encryption key file {path} holds no key"
LOG_ENCRYPTION_KEY_GENERATED = (
    "Generated a local token encryption key at %s because %s is not set; set it before using "
    "real accounts in production"
)
LOG_ENCRYPTION_KEY_LOCAL = (
    "Using a local token encryption key at %s because %s is not set; set it before using real "
    "accounts in production"
)
# Configuration file errors name the file and the key: "<file>: apps.box.scopes: …".
CONFIG_ERROR = "{where}: {detail}."
CONFIG_UNREADABLE = "{path}: cannot be read ({reason})."
CONFIG_NOT_UTF8 = "{path}: is not UTF-8 text."
CONFIG_NOT_TOML = "{path}: is not valid TOML ({error})."
CONFIG_UNKNOWN_TOP_KEY = "{path}: unknown top-level key {key!r}."
CONFIG_NOT_A_TABLE = "{where}: must be a table."
CONFIG_TABLE_NOT_A_TABLE = "{path}: [{table}] must be a table."
CONFIG_UNKNOWN_KEY = "unknown key"
CONFIG_REQUIRED = "is required"
APPS_KEY_INVALID = "{where}: app keys use lower-case letters, digits and _."
APPS_PARENT_NAME_INVALID = "{where}: parent names use lower-case letters, digits and _."
APPS_PARENT_APP_UNKNOWN = "{where}.app: no app {app!r} is configured."
APPS_SALESFORCE_HOST = "must be login.salesforce.com, test.salesforce.com or a My Domain"
APPS_URL_NOT_HTTPS = "{what} must be an https URL"
APPS_ENV_VARIABLE_UNSET = "the environment variable {variable} is not set"
APPS_SERVICENOW_INSTANCE = "instance is required for the servicenow preset"
APPS_CUSTOM_URLS = "authorize_url and token_url are required for a custom app"
RECIPES_KEY_INVALID = "{where}: recipe keys use lower-case letters, digits and _."
RECIPES_KEY_TAKEN = "{where}: the key is already used by another recipe."
RECIPES_ACTION_OR_HANDLER = "{where}: a recipe has either an action or a handler."
RECIPES_PARENT_UNKNOWN = "{where}.parent: {parent!r} is not a configured parent connection."
RECIPES_PHRASE_BUILTIN = '{where}.phrase: "{words}" collides with the built-in command "{command}".'
RECIPES_PHRASE_COLLIDES = (
    '{where}.phrase: "{words}" collides with recipe {other} ("{other_phrase}"), so a message '
    "could match both."
)
RECIPES_SECRETS_UNKNOWN = "{where}.secret_arguments: {name} is not an argument of the phrase."
RECIPES_HANDLER_NOT_CALLABLE = "{where}.handler: must be an async callable."
RECIPES_NAME_EMPTY = "{where}.name: must not be empty."
RECIPES_BODY_VALUE = "{where}: must be a string, a finite number, true/false or a table."
RECIPES_EXAMPLE_UNKNOWN = "{where}.examples.{name}: is not an argument of the phrase."
RECIPES_EXAMPLE_TYPE = "{where}.examples.{name}: must be a string or a number."
RECIPES_EXAMPLE_QUOTES = "{where}.examples.{name}: cannot contain double quotes."
RECIPES_GET_BODY = "{where}.action.body: a GET request has no body."
RECIPES_FIELD_NOT_PATH = (
    "{where}.result.fields.{label}: {path!r} is not a dotted path like result.number."
)
RECIPES_LINK_SHOWS_SECRETS = "{where}.result.link: shows the secret argument {name}."
# What a recipe's result says was done when it names no verb ("Done in Box as …").
RECIPE_VERB_DEFAULT = "Done"
# Phrases in the recipes file (they follow "<file>: recipes.<key>.phrase: ").
PHRASE_EMPTY = "must not be empty"
PHRASE_UNBALANCED = "has an unbalanced { or }"
PHRASE_SPACE_AFTER = "needs a space after each {argument}"
PHRASE_QUOTE_OR_BRACE = "has a word with a double quote or a brace"
PHRASE_SPACE_BEFORE = "needs a space before {{{name}}}"
PHRASE_EMPTY_ARGUMENT = "has an empty {}; arguments need a name"
PHRASE_CONVERSION = "{{{name}!{conversion}}} is not an argument; drop the !{conversion}"
PHRASE_ARGUMENT_NAME = "{{{name}}}: argument names use lower-case letters, digits and _"
PHRASE_ARGUMENT_RESERVED = "{{{name}}}: {name} is reserved, choose another argument name"
PHRASE_ARGUMENT_TYPE = "{{{name}:{spec}}} has an unknown type; use text, number or integer"
PHRASE_ARGUMENT_TWICE = "uses the argument {name} twice"
PHRASE_LITERAL_FIRST = 'must start with a literal word, like "create opportunity {name}"'
# Templates in recipe actions (they follow "<file>: recipes.<key>.action.url: " and the like).
TEMPLATE_UNBALANCED = "has an unbalanced { or }; write {{ or }} for a brace"
TEMPLATE_EMPTY_PLACEHOLDER = "has an empty {}; placeholders need a name"
TEMPLATE_NOT_PLAIN = "{{{name}}} must be a plain name, without ! or :"
TEMPLATE_NOT_A_PATH = "{{{name}}} is not a dotted path like {{response.id}}"
TEMPLATE_UNKNOWN = (
    "{{{name}}} is unknown; a placeholder is a phrase argument, {{connection.api_base_url}}"
)
TEMPLATE_UNKNOWN_WITH_RESPONSE = (
    "{{{name}}} is unknown; a placeholder is a phrase argument, {{connection.api_base_url}} or "
    "{{response.<path>}}"
)
TEMPLATE_DOT_SEGMENT = "has a . or .. path segment; write the path it leads to instead"
TEMPLATE_AFTER_BASE_URL = "must have / or ? right after {connection.api_base_url}"
TEMPLATE_HOST_IN_FULL = "must name its https host in full, without placeholders"
TEMPLATE_URL_START = "must start with {connection.api_base_url} or https://"
TEMPLATE_NO_BASE_URL = "the connection has no API base URL"
TEMPLATE_NO_VALUE = "no value for {{{name}}}"
# Why a filled-in request URL was not sent (written to the log after "its URL ").
TARGET_INVALID = "is not a valid URL"
TARGET_NOT_ABSOLUTE = "is not an absolute http(s) URL"
TARGET_OTHER_HOST = "goes to another host than its template names"
TARGET_LEAVES_PATH = "leaves the path its template fixes"
TARGET_DOT_SEGMENT = "has a . or .. path segment"

# recipe arguments (what a person typed after a recipe's words)
RECIPE_ARGUMENT_EMPTY = "{name} must not be empty"
RECIPE_ARGUMENT_TOO_LONG = "{name} is too long for a number"
RECIPE_ARGUMENT_NOT_INTEGER = "{name} must be a whole number, not {value}"
RECIPE_ARGUMENT_NOT_NUMBER = "{name} must be a number, not {value}"
RECIPE_QUOTE_NOT_CLOSED = "a double quote is not closed"
RECIPE_QUOTE_NOT_CLOSED_PROBLEM = 'A double quote (") is not closed'
RECIPE_PROBLEM_WITH_EXAMPLE = "{problem}. Example: {example}"
RECIPE_NEEDS = '"{words}" needs: {expected}'
RECIPE_TAKES_NOTHING = '"{words}" takes nothing after it'
RECIPE_TAKES_ONLY = '"{words}" takes only: {expected}; put a value with spaces in double quotes'

# admin privileges (command line)
CLI_NONE = "(none)"
CLI_PRIVILEGE_ROW = "{tenant}\t{kind}\t{principal}\t{name}\t{privileges}"
CLI_PRIVILEGE_NONE_CHOSEN = "Name at least one privilege, or --all for every one; nothing was done."
CLI_PRIVILEGE_GRANTED = "{principal} now holds: {privileges}."
CLI_PRIVILEGE_NOTHING_TO_REVOKE = "{principal} held none of those privileges; nothing was done."
CLI_PRIVILEGE_REVOKED = "Revoked from {principal}."
CLI_PRIVILEGE_UNKNOWN = "{value!r} is not a privilege; choose from {choices}"

# admin console settings
SETTING_OIDC_AUTHORITY_SHAPE = (
    "ADMIN_OIDC_AUTHORITY must be an https:// address with a path, such as "
    "https://127.0.0.1:8443/contoso"
)
SETTING_CONSOLE_CLIENT_REQUIRED = (
    "The admin console's sign-in needs a client id and secret: set ADMIN_CLIENT_ID and "
    "ADMIN_CLIENT_SECRET (or the bot's MicrosoftAppId and MicrosoftAppPassword)."
)

# admin console pages
CONSOLE_LOOPBACK_ONLY = (
    "No sign-in is configured here, so the console opens only on this machine, with a one-time "
    "link from: python -m admin console-link"
)
CONSOLE_FORBIDDEN = (
    'This needs the "{privilege}" privilege, which you don\'t hold. Ask an administrator who '
    "can manage privileges to grant it."
)
CONSOLE_BAD_CSRF = (
    "This form was not sent from your current session (it may be old, or from another site). "
    "Nothing was changed; go back, reload the page and try again."
)
CONSOLE_NOT_FOUND = "There is no such page in the console."
CONSOLE_STORE_DOWN = (
    "The database didn't answer in time; try again in a moment. A change you were making may "
    "be done only in part: reload the list to see where things stand."
)
CONSOLE_BAD_FIELD = "{field}: {problem}"
CONSOLE_BAD_STATUS = "choose Connected, Disconnected or Needs sign-in"
CONSOLE_BAD_ID = "is not a connection id"
CONSOLE_BAD_CURSOR = "is not a page of this list (start again from the first page)"
CONSOLE_BAD_NUMBER = "must be a whole number from {low} to {high}"
CONSOLE_BAD_DATE = "must be a date like 2026-12-01"
CONSOLE_TOO_LONG = "is longer than {limit} characters"
CONSOLE_BAD_APP = "is not an app name"
CONSOLE_BAD_ACTION = "choose Disconnect or Delete"
CONSOLE_NOTHING_CHOSEN = "Choose at least one connection, or act on every matching one."
CONSOLE_TOO_MANY = "At most {limit} connections can be changed at once; narrow the filters."
CONSOLE_SIGNIN_FAILED = "Signing in didn't work: {reason} Nothing was changed."
CONSOLE_PARENT_GONE = "(removed)"
CONSOLE_WILL_DISCONNECT = (
    "{person} will be signed out of {app} ({account}) and asked to sign in again the next time "
    "a recipe needs {app}. The connection stays listed as Disconnected."
)
CONSOLE_WILL_DELETE = (
    "{person}'s {app} connection ({account}) will be removed, and {person} will be asked to sign "
    "in again the next time a recipe needs {app}."
)
CONSOLE_ALREADY_GONE = "A connection was already removed; nothing to do."
CONSOLE_NO_CHANGE = "{person}: {label} was already in that state; nothing changed."
CONSOLE_DISCONNECTED = "{person}: {label} is disconnected."
CONSOLE_DELETED = "{person}: {label} is removed."
CONSOLE_NO_RECIPES = "none"
CONSOLE_PARENT_DELETED = (
    "The parent connection {name} is removed. Recipes that stop: {recipes}. Its runtime user "
    "connections stay stored."
)
CONSOLE_EVERY_TENANT = "Edit recipes, for every tenant this bot serves"
CONSOLE_BAD_SWITCH = "choose on or off"

# admin console sign-in
# What the console shows when signing in did not work, by console.signin.SignInFailure.
CONSOLE_SIGNIN_FAILURES = {
    "not_available": "The admin console does not sign in this way here.",
    "unknown_state": (
        "This sign-in is not valid any more: it expired, was already used, or was never "
        "started here. Sign in again."
    ),
    "wrong_browser": (
        "This sign-in was started in another browser, or this browser lost its sign-in cookie. "
        "Sign in again from this browser."
    ),
    "provider_error": "The identity provider did not sign you in. Sign in again.",
    "exchange_failed": (
        "The sign-in could not be completed with the identity provider. Sign in again."
    ),
    "invalid_claims": (
        "The identity provider's answer was not for this console or has expired, so you were "
        "not signed in. Sign in again."
    ),
    "no_identity": (
        "The identity provider did not say who you are (tenant and user id), so you were not "
        "signed in."
    ),
    "tenant_not_allowed": "Your organization is not allowed to use this admin console.",
    "unavailable": "The identity provider can't be reached right now. Try again in a moment.",
    "unknown_link": (
        "This sign-in link is not valid any more: it expired or was already used. Run "
        "python -m admin console-link on this machine for a new one."
    ),
}
# The administrator a one-time link signs in (link mode).
CONSOLE_LOCAL_OPERATOR = "Operator on this machine"
LOG_CONSOLE_SIGNIN_FAILED = "Admin console sign-in failed: %s"
LOG_CONSOLE_SIGNIN_FAILED_WITH = "Admin console sign-in failed: %s (%s)"
LOG_CONSOLE_PROVIDER_UNAVAILABLE = "Admin console sign-in: identity provider unavailable (%s)"
# python -m admin console-link
CLI_CONSOLE_LINK_NOTE = "It works once, for 10 minutes, and only in a browser on this machine."
CLI_CONSOLE_LINK_REFUSED = (
    "The admin console signs in with {method} here, not with a one-time link: open {url}"
)
CONSOLE_SIGN_IN_METHODS = {
    "entra": "Entra ID",
    "oidc": "OpenID Connect (ADMIN_OIDC_AUTHORITY)",
}
CONSOLE_BAD_AUDIT_ACTION = "is not an action the audit log records"
CONSOLE_BAD_PRINCIPAL_KIND = "choose a person, a group or an app role"
CONSOLE_PRINCIPAL_REQUIRED = "Say whom: a tenant, a kind (person, group or app role) and an id."
CONSOLE_BAD_PRIVILEGE = "That is not a privilege that can be granted here."
CONSOLE_PRIVILEGE_NONE_CHOSEN = "Choose at least one privilege to grant."
CONSOLE_NEEDS_SIGN_IN = (
    "The admin console needs a sign-in on a bot that others can reach: set ADMIN_CLIENT_ID and "
    "ADMIN_CLIENT_SECRET (an Entra app registration with the redirect URI "
    "PUBLIC_BASE_URL/admin/callback)."
)
LOG_CONSOLE_STORE_DOWN = "Admin console: the database did not answer (%s)"
# admin console page titles
CONSOLE_TITLE_NOT_SET_UP = "The console is not set up"
CONSOLE_TITLE_LOOPBACK_ONLY = "Only from this machine"
CONSOLE_TITLE_FORBIDDEN = "You can't do that here"
CONSOLE_TITLE_BAD_CSRF = "Nothing was changed"
CONSOLE_TITLE_BAD_INPUT = "That request isn't valid"
CONSOLE_TITLE_STORE_DOWN = "The database didn't answer"
CONSOLE_TITLE_SIGNIN_FAILED = "Signing in didn't work"
CONSOLE_HTTP_TITLES = {404: "Page not found", 405: "Not allowed", 413: "Too much at once"}

# The bot's direct reply path (bots/connector.py, bots/bot_token.py).
LOG_BOT_TOKEN_FAILED = "Could not get the bot's own access token: %s"  # noqa: S105
LOG_CONNECTOR_RETRY = "Connector at %s answered %s; attempt %d of %d"
LOG_CONNECTOR_FAILED = "Connector at %s refused an activity: %s"
LOG_TURN_REPLY_FAILED = "A reply in a turn (activity type %s) could not be delivered: %s"

# --- Several worker processes (serving.py, `python app.py --workers N`) ---------------------
SETTING_WORKERS_RANGE = "give a whole number of worker processes from 1 to 64"
WORKERS_OPTION_INVALID = (
    "--workers {value} is invalid: give a whole number of worker processes from 1 to 64."
)
ARGUMENTS_INVALID = "{error} (usage: python app.py [--workers N])."
WORKER_HANDOFF_INVALID = (
    "{variable} is set but is not what a supervisor gives its workers: unset it and start again."
)
LISTEN_FAILED = "HOST {host} and PORT {port} cannot be listened on: {reason}."
WORKER_EXIT_STATUS = "exit status {status}"
WORKER_KILLED_BY = "killed by {signal}"
LOG_SUPERVISOR_STARTED = "Supervisor process %d: starting %d worker processes for %s:%d"
LOG_WORKER_SERVES = "Worker %d serves (process %d)"
LOG_WORKER_NOT_READY = "Worker %d (process %d) did not answer /healthz within %d s; stopping it"
LOG_WORKER_FAILED_AT_START = "Worker %d (process %d) stopped before serving (%s)"
LOG_WORKER_EXITED = "Worker %d (process %d) stopped unexpectedly (%s); starting another in %.1f s"
LOG_WORKERS_ROLLING = "SIGHUP: replacing the %d worker processes one at a time"
LOG_WORKER_REPLACED = "Worker %d: process %d replaced by process %d"
LOG_WORKERS_ROLLED = "Every worker process was replaced"
LOG_WORKERS_ROLL_STOPPED = (
    "Rolling restart stopped: the new worker %d (process %d) did not serve; process %d keeps "
    "serving"
)
LOG_WORKERS_STOPPING = "Stopping %d worker processes (%s)"
LOG_WORKER_KILLED = "Worker process %d did not stop within %d s and was killed"
LOG_WORKERS_STOPPED = "Every worker process stopped"

# `python -m sandbox` without the `sandbox` extra.
SANDBOX_EXTRA_MISSING = (
    "The sandbox provider needs the sandbox extra (module {module} is missing): "
    'install it with python3 -m pip install -e ".[sandbox]" and run python3 -m sandbox again.'
)

# --- Welcome when the app is installed (bots/welcome_handlers.py, cards/welcome.py) ---------
WELCOME_TITLE = "Welcome"
WELCOME_TEXT = (
    "I run your team's recipes as you, with your own accounts in other apps. Your connections "
    "are yours: only you see them, and you can disconnect or delete them at any time."
)
WELCOME_HELP = "Type help to see what I can do."
WELCOME_TEAM_TEXT = (
    "Hi, I'm here. Anyone can @mention me to run the team's recipes as themselves; each "
    "person's connections stay private to them."
)
WELCOME_TEAM_HELP = "@mention me with help to see what I can do."
LOG_WELCOMED = "Welcomed a new install (%s)"
LOG_WELCOME_STORE_FAILED = "Could not record a welcome (%s): none was sent"
LOG_INSTALL_REMOVED = "The app was removed from a 1:1 chat; a new install will be welcomed"

# --- First-run clarity (issue #15) ------------------------------------------------------------
RECONNECT_APP_NOT_CONFIGURED = (
    "{label} can't be reconnected: {app} isn't set up in this bot any more. Ask your administrator."
)
CONNECTIONS_CANNOT_RECONNECT = (
    "Reconnect isn't offered for a connection whose app is no longer set up in this bot: ask "
    "your administrator, or delete it."
)
CONNECTIONS_EMPTY_NO_RECIPES = (
    "This bot has no recipes yet, so nothing will ask you to sign in for now."
)
HELP_INTRO_NO_RECIPES = (
    "This bot has no recipes yet. When your administrator adds some, they appear here; a "
    "recipe that acts as you asks you to sign in to its app once with your own account."
)
RECIPE_PARENT_NOT_AUTHORIZED = (
    "{recipe} can't run yet: its {app} app connection was set up but has never been "
    "authorized. Nothing was done. Ask {contact} to authorize it."
)
CLI_PARENT_NOT_AUTHORIZED = "not authorized (no tokens: run parents authorize)"
CLI_PARENT_AUTHORIZED = "authorized"
CLI_PARENTS_HEADER = "ID\tNAME\tTENANT\tAPP\tACCOUNT\tSTATUS\tRUNTIME CONNECTIONS\tAUTHORIZATION"
CLI_CONNECTIONS_HEADER = "ID\tKIND\tAPP\tACCOUNT\tSTATUS\tPARENT\tOWNER"
CLI_RECIPES_HEADER = "RECIPE\tVERIFY USER ACCESS (DATABASE)\tVERIFY USER ACCESS (FILE)"
CLI_OWNER_OPERATOR = "operator {login}"
CLI_NO_ANSWER = "No answer (standard input is closed); nothing was done."
CLI_DATA_DIR_MISSING = (
    "The data folder {path} does not exist. DATA_DIR is read relative to the current "
    "directory ({cwd}), as the bot reads it: run this command from the folder the bot runs in, "
    "set DATA_DIR to the bot's data folder (or MONGODB_URI to its database), or create the "
    "folder to start a new, empty store. Nothing was done."
)
CLI_PRIVILEGES_HEADER = "TENANT\tKIND\tPRINCIPAL\tNAME\tPRIVILEGES"

# --- The record tells its story (issue #15 item 4) ---------------------------------------------
# A signed-out connection in the person's list: "Needs sign-in since 3 Dec" (UTC days).
STATUS_SINCE = "{status} since {date}"
SHORT_DATE = "{day} {month}"
SHORT_DATE_WITH_YEAR = "{day} {month} {year}"
SHORT_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# The admin console's words for a connection's last error code (`LastError.code`).
LAST_ERROR_WORDS = {
    "invalid_grant": "the app refused the saved sign-in",
    "unauthorized": "the app refused the access token",
}
LAST_ERROR_KNOWN = "{words} ({code})"
LAST_ERROR_UNKNOWN = "error code {code}"
LOG_TOUCH_USED_FAILED = "Could not record that a connection was used (%s); a later run will"
# --- end of issue #15 item 4 -------------------------------------------------------------------

# --- Keeping connections alive and telling breaks (issue 15) ---------------------------------
APPS_LIFETIME_INVALID = (
    '{value!r} is not a lifetime: write a whole number and a unit, such as "60d", "12h", '
    '"30m" or "90s", or "never".'
)
LOG_KEEP_ALIVE_ROUND = (
    "Kept connections alive: %d refreshed, %d already fresh, %d need sign-in, %d not reachable "
    "(apps skipped after repeated failures: %s)."
)
LOG_KEEP_ALIVE_FAILED = (
    "A round of keeping connections alive failed (%s); the next round tries again."
)
LOG_NOTICE_FAILED = "Telling a person that their connection broke failed (%s)."
NOTICE_AN_ADMINISTRATOR = "an administrator"
NOTICE_WHY_REFRESH_REFUSED = (
    "The app no longer accepts your saved sign-in: it may have expired, or it was revoked at the "
    "app."
)
NOTICE_WHY_TOKEN_REFUSED = "The app refused the bot's access with your account."  # noqa: S105
NOTICE_WHY_DISCONNECTED = "{by} signed this connection out."
NOTICE_WHY_DELETED = "{by} removed this connection."
NOTICE_TITLE = "Your {app} connection needs attention"
NOTICE_TITLE_REMOVED = "Your {app} connection was removed"
NOTICE_RECONNECT = (
    "Recipes that use it will ask you to sign in again. Reconnect now to have it ready."
)
NOTICE_ASK = "To use it again, ask {contact}."
NOTICE_SINCE = "Since {date}"
# --- Slack ----------------------------------------------------------------------------------
SETTING_SLACK_INCOMPLETE = (
    "SLACK_SIGNING_SECRET is set, so Slack is on: set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET "
    "too (Basic Information > App Credentials of your Slack app)."
)
SLACK_DID_NOT_UNDERSTAND = "Sorry, I didn't understand that. Type *help* to see what I can do."
SLACK_SENT_TO_DM = "I've sent that to you in a direct message with me."
SLACK_DM_UNAVAILABLE = (
    "I can't send you a direct message yet. Open the app's Messages tab once, then try again."
)
SLACK_RECONNECT_SENT = "I've sent you a sign-in message for {app} below."
SLACK_LOGIN_SENT_TO_DM = "This needs your own account: I've sent you a sign-in message in a DM."
LOG_SLACK_CALL_FAILED = "A Slack Web API call (%s) failed: %s"
# --- Slack Block Kit (slack/blocks.py) ----------------------------------------------------------
# The App Home tab's title (a view title is at most 24 characters).
SLACK_HOME_TITLE = "Your connections"
# A connection in the list; the names come escaped, the status on its own line.
SLACK_CONNECTION_LINE = "*{app}* — {account}\n{status}"
SLACK_CONFIRM_DISCONNECT_TITLE = "Disconnect this connection?"
SLACK_CONFIRM_DISCONNECT_TEXT = (
    "Disconnect {label}? You are signed out and the connection stays; the next time a recipe "
    "needs it, you will be asked to sign in again."
)
SLACK_PROBLEM_LINE = ":warning: {problem}"
SLACK_LOGIN_TEXT = "Sign in to *{app}* to continue"
SLACK_LOGIN_DETAIL = (
    "Sign in with your own {app} account. Afterwards, type the 6-digit code shown in the "
    "sign-in window here, in this direct message."
)
SLACK_RECIPE_LINE = "`{usage}` — {about}"
SLACK_MORE_RECIPES = "…and {count} more."
SLACK_RESULT_CREDITED = ":white_check_mark: {verb} in {app} as {account}"
SLACK_FIELD_LINE = "*{label}*\n{value}"
SURFACE_TEAMS = "Teams"
SURFACE_SLACK = "Slack"
SLACK_UNREADABLE = "The request body is not a Slack event or interaction."
LOG_SLACK_UNREADABLE = "A signed Slack request had a body that is not an event or interaction"
LOG_ORPHAN_STOPPED = "The supervisor is gone: this worker stopped after %.0f s without finishing"
