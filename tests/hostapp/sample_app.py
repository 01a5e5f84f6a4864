"""A small Functions app with one trigger of each kind, for the local host's own tests."""

import json

import azure.functions as func

app = func.FunctionApp()
CALLS: list[tuple[str, object]] = []


@app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer")
async def tick(timer: func.TimerRequest) -> None:
    CALLS.append(("tick", timer.past_due))


@app.route(route="echo/{name}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    payload = {"name": req.route_params["name"], "body": req.get_body().decode(), "q": dict(req.params)}
    return func.HttpResponse(json.dumps(payload), status_code=201, mimetype="application/json")


@app.route(route="open", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def open_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("open")


@app.service_bus_queue_trigger(
    arg_name="message", queue_name="%FLAKY_QUEUE%", connection="ServiceBusConnection"
)
async def always_fails(message: func.ServiceBusMessage) -> None:
    CALLS.append(("always_fails", message.delivery_count))
    raise RuntimeError("this function always fails")
