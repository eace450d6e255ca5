"""FastAPI app: REST API under ``/api`` and HTML pages with Plotly figures.

    from nanosd_nas.dashboards import Settings, create_app
    app = create_app(Settings(database_url="sqlite:///nanosd-nas.db"))
"""

from nanosd_nas.dashboards._settings import Settings
from nanosd_nas.dashboards.app import create_app

__all__ = ["Settings", "create_app"]
