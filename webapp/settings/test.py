"""Test settings: the real services, isolated from a developer's data.

Tests use pytest-django's test_ database, their own Redis database (PONDER_TEST_REDIS_DB,
default 15) and channel prefix. Subprocesses started by tests (a Celery worker, daphne)
load these settings too, with DATABASE_URL pointing at the test database.
"""

import os
from urllib.parse import urlsplit, urlunsplit

from webapp.env import env_int
from webapp.settings import *  # noqa: F403
from webapp.settings import REDIS_URL as _BASE_REDIS_URL


def _redis_db(url: str, db: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return url
    return urlunsplit(parts._replace(path=f"/{db}"))


DEBUG = False
# One key for the test process and the servers it starts (their data folders differ), so a
# session made in a test is valid on them.
SECRET_KEY = "ponder-tests-only-key-never-used-outside-the-test-suite-0123456789"
# Short leases so the tests of lost workers wait seconds, not a minute.
PONDER_LEASE_SECONDS = env_int("PONDER_LEASE_SECONDS", 20, minimum=4)
REDIS_URL = _redis_db(_BASE_REDIS_URL, os.environ.get("PONDER_TEST_REDIS_DB", "15"))
CELERY_BROKER_URL = REDIS_URL
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; never in production
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # the test server serves static files without collectstatic
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],  # > channels' 5 s blocking read
            "prefix": os.environ.get("PONDER_CHANNEL_PREFIX", "ponder-test"),
            "capacity": 5000,
            "expiry": 30,
        },
    }
}
