"""The Teams app package: manifest template, icons, and the command that builds the zip.

`manifest.build` renders `manifest.template.json` for one bot registration and public base URL
and zips it with `color.png` and `outline.png`; `python -m manifest` runs it.
"""
