"""The only package that knows Celery: the app, its tasks, beat, and the `procexec` command."""
