"""Azure Functions entry point: wiring only; behaviour lives in `functions/` and `shared/`."""

import azure.functions as func

from functions.attribution import bp as attribution
from functions.dashboard import bp as dashboard
from functions.dead_letters import bp as dead_letters
from functions.delivery import bp as delivery
from functions.http_api import bp as http_api
from functions.onboarding import bp as onboarding
from functions.repair import bp as repair
from functions.reverify import bp as reverify
from shared.spine.untrusted import configure_logging

configure_logging()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(onboarding)
app.register_functions(reverify)
app.register_functions(http_api)
app.register_functions(dead_letters)
app.register_functions(attribution)
app.register_functions(dashboard)
app.register_functions(delivery)
app.register_functions(repair)
