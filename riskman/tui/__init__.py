"""The trader terminal (Textual): `app.run_terminal` for `riskman`, the screens, the admin.

Only the terminal commands import this package: the engine and `riskman --no-ui` never do.
"""
