"""Azure Functions entry point: wiring only; behaviour lives in `functions/` and `shared/`."""

import azure.functions as func

from functions.onboarding import bp as onboarding

app = func.FunctionApp()
app.register_functions(onboarding)
