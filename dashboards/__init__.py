"""FastAPI app: REST API under ``/api`` and HTML pages with Plotly figures (DESIGN.md §7).

    from dashboards import Settings, create_app
    app = create_app(Settings(database_url="sqlite:///nanosd-nas.db"))
"""

from dashboards._settings import Settings
from dashboards.app import create_app

__all__ = ["Settings", "create_app"]
