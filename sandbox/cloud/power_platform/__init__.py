"""Power Platform stand-ins on the sandbox's one HTTPS origin, each at its real API's paths:

- BAP admin (`/providers/Microsoft.BusinessAppPlatform/...`, `bap.py`) and Power Apps admin
  (`/providers/Microsoft.PowerApps/...`, `powerapps.py`): audience https://service.powerapps.com/
- Flow admin (`/providers/Microsoft.ProcessSimple/...`, `flow.py`): https://service.flow.microsoft.com/
- Dataverse Web API per environment (`/dataverse/{envId}/api/data/v9.2/...`, `dataverse.py`, with
  `odata.py` and `dataverse_tables.py`): the environment's instance URL
- Power BI admin (`/v1.0/myorg/admin/...`, `powerbi.py`): https://analysis.windows.net/powerbi/api

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
from .world import PowerPlatformWorld

__all__ = [
    "DATAVERSE_PREFIX",
    "BusinessAppPlatform",
    "Dataverse",
    "Flow",
    "PowerApps",
    "PowerBi",
    "PowerPlatformWorld",
    "instance_url",
]
