"""FastAPI app: REST API and HTML pages with Plotly figures.

Empty until the dashboard work lands; see DESIGN.md section 7.
"""
