"""Power Platform stand-ins on the sandbox's one HTTPS origin, each at its real API's paths:

- BAP admin (`/providers/Microsoft.BusinessAppPlatform/...`, `bap.py`) and Power Apps admin
  (`/providers/Microsoft.PowerApps/...`, `powerapps.py`): audience https://service.powerapps.com/
- Flow admin (`/providers/Microsoft.ProcessSimple/...`, `flow.py`): https://service.flow.microsoft.com/
- Dataverse Web API per environment (`/dataverse/{envId}/api/data/v9.2/...`, `dataverse.py`, with
  `odata.py` and `dataverse_tables.py`): the environment's instance URL
- Power BI admin (`/v1.0/myorg/admin/...`, `powerbi.py`) and a workspace's imports, datasets and
  reports (`/v1.0/myorg/groups/{id}/...`, `powerbi_imports.py`): https://analysis.windows.net/powerbi/api
- Delivery: Dataverse's StageSolution / ImportSolutionAsync (`solutions.py`, `solution_import.py`,
  `solution_zip.py` with the `solution_zip(...)` builder, `delivery_tables.py`, `delivery_state.py`)

`world.py` holds what they serve (per tenant: grants, environments, application users), `common.py`
what the admin APIs share (tokens, errors, `nextLink` paging), `throttle.py` the service protection.
Each missing grant shows up as its own API's 401/403, never another's.
"""

from __future__ import annotations

from .bap import DATAVERSE_PREFIX, BusinessAppPlatform, instance_url
from .dataverse import Dataverse
from .flow import Flow
from .powerapps import PowerApps
from .powerbi import PowerBi
from .powerbi_imports import pbix_file
from .solution_import import DeliveredComponent, delivered_components
from .solution_zip import (
    Component,
    bot,
    canvas_app,
    connection_reference,
    flow,
    model_driven_app,
    solution_zip,
)
from .world import PowerPlatformWorld

__all__ = [
    "DATAVERSE_PREFIX",
    "BusinessAppPlatform",
    "Component",
    "Dataverse",
    "DeliveredComponent",
    "Flow",
    "PowerApps",
    "PowerBi",
    "PowerPlatformWorld",
    "bot",
    "canvas_app",
    "connection_reference",
    "delivered_components",
    "flow",
    "instance_url",
    "model_driven_app",
    "pbix_file",
    "solution_zip",
]
