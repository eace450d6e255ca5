"""Accuracy evaluators, studies (Optuna), execution (Ray) and storage (SQLAlchemy + Alembic).

Empty until the search work lands; see DESIGN.md sections 5 and 6.
"""
