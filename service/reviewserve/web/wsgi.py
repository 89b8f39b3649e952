"""WSGI entry point for gunicorn: ``reviewserve.web.wsgi:app``."""

from reviewserve.web.app import create_app

app = create_app(retry=True)
