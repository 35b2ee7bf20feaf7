"""Ponder settings, read from the environment (see README "Configuration").

DATABASE_URL, REDIS_URL, PONDER_DATA_DIR, SECRET_KEY, DEBUG, ALLOWED_HOSTS,
PONDER_HTTPS (secure cookies, HSTS and SSL redirect behind a TLS proxy).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from webapp.env import env_bool, env_int, env_list, env_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = Path(os.environ.get("PONDER_DATA_DIR") or BASE_DIR / "var").resolve()

DEBUG = env_bool("DEBUG", False)


def _persisted_secret_key(path: Path) -> str:
    """A random key made once and kept in `path` (mode 0600), so that sessions and signed
    values survive restarts and every process of this machine agrees on it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(tmp, path)
        tmp.unlink()
    return path.read_text().strip()


# Production (PONDER_HTTPS) names its key; elsewhere a random one is kept in the data folder.
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY and env_bool("PONDER_HTTPS", False):
    raise ImproperlyConfigured("SECRET_KEY must be set when PONDER_HTTPS is on (production)")
SECRET_KEY = SECRET_KEY or _persisted_secret_key(DATA_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "ninja",
    "axes",
    "webapp.accounts",
    "webapp.projects",
    "webapp.datasets",
    "webapp.rewards",
    "webapp.runs",
    "webapp.ingest",
    "webapp.review",
    "webapp.compare",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers a locked-out login with 429
]

# Login throttling (django-axes): after PONDER_LOGIN_FAILURES wrong passwords for one username
# from one address, that pair is locked out for PONDER_LOGIN_COOLOFF_MINUTES.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("PONDER_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("PONDER_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # a colleague's typos behind one NAT lock out only them
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # its start-up banner on every command

ROOT_URLCONF = "webapp.urls"
ASGI_APPLICATION = "webapp.asgi.application"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_url("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ponder",
                       schemes=("postgres", "postgresql", "pgsql"))
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))
CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],  # > channels' 5 s blocking read
            "prefix": os.environ.get("PONDER_CHANNEL_PREFIX", "ponder"),
            "capacity": 2000,
            "expiry": 30,
        },
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "webapp" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Behind TLS in production; off for the local quick start over plain HTTP.
HTTPS = env_bool("PONDER_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

PONDER_DATA_DIR = DATA_DIR
# Celery queue names for the two kinds of work (a deployment may split GPU pools further).
# What a run launched from the browser or the API may name besides Ponder's own models and
# datasets (webapp/runs/references.py): Hugging Face model names (glob patterns, e.g.
# "Qwen/*,meta-llama/Llama-3.2-1B") and folders holding models or datasets.
PONDER_ALLOWED_MODELS = env_list("PONDER_ALLOWED_MODELS", [])
PONDER_MODEL_DIRS = env_list("PONDER_MODEL_DIRS", [])
# Hugging Face Hub datasets a project owner may import by name (glob patterns, e.g.
# "openai/gsm8k,HuggingFaceH4/*"); a worker downloads them, or finds them in its local cache.
PONDER_ALLOWED_DATASETS = env_list("PONDER_ALLOWED_DATASETS", [])
# The operator's maxima for a run's resource knobs (each PONDER_MAX_<NAME> overrides one).
_LIMITS = {"nproc_per_node": 8, "steps": 100_000, "max_steps": 100_000, "group_size": 256,
           "prompts_per_step": 1024, "max_new_tokens": 32_768, "k": 256, "num_prompts": 100_000,
           "max_length": 131_072, "epochs": 100, "batch_size": 4096, "micro_batch_size": 4096,
           "num_iterations": 16, "train_examples": 10_000_000, "eval_examples": 100_000, "eval_samples": 256,
           "prompts_per_batch": 4096, "num_threads": 256, "stream_samples": 64, "max_per_prompt": 256}
PONDER_LIMITS = {name: env_int(f"PONDER_MAX_{name.upper()}", default, minimum=1) for name, default in _LIMITS.items()}
# A running run's worker renews its lease every PONDER_LEASE_SECONDS / 4; a run whose lease
# lapsed is requeued (webapp/runs/leases.py). Far below the broker's visibility timeout.
PONDER_LEASE_SECONDS = env_int("PONDER_LEASE_SECONDS", 60, minimum=4)
# An external run (logged through the API) that sends nothing for this long is marked finished.
PONDER_EXTERNAL_IDLE_SECONDS = env_int("PONDER_EXTERNAL_IDLE_SECONDS", 3600, minimum=60)
PONDER_QUEUES = {"gpu": os.environ.get("PONDER_GPU_QUEUE", "gpu"), "cpu": os.environ.get("PONDER_CPU_QUEUE", "cpu")}
# Rollout rows accepted by one ingestion call (CONTRACTS: up to 5,000).
PONDER_MAX_ROLLOUTS_PER_CALL = 5000
# Dataset exports with more rows than this are written by a Celery worker, with progress.
PONDER_EXPORT_SYNC_MAX_ROWS = env_int("PONDER_EXPORT_SYNC_MAX_ROWS", 20_000, minimum=0)
PONDER_MAX_METRICS_PER_CALL = env_int("PONDER_MAX_METRICS_PER_CALL", 100_000, minimum=1)
# Dataset uploads (webapp/datasets/uploads.py, files.py): one file's size, counted while it
# streams in; the rows a dataset may hold; what a Parquet file's metadata may claim
# uncompressed; what a zip may unpack to, checked from its central directory first.
PONDER_MAX_UPLOAD_MB = env_int("PONDER_MAX_UPLOAD_MB", 512, minimum=1)
PONDER_MAX_DATASET_ROWS = env_int("PONDER_MAX_DATASET_ROWS", 1_000_000, minimum=1)
PONDER_MAX_PARQUET_UNCOMPRESSED_MB = env_int("PONDER_MAX_PARQUET_UNCOMPRESSED_MB", 2048, minimum=1)
PONDER_MAX_UNZIPPED_MB = env_int("PONDER_MAX_UNZIPPED_MB", 4096, minimum=1)
PONDER_MAX_ZIP_FILES = env_int("PONDER_MAX_ZIP_FILES", 10_000, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# Ingestion calls carry up to 5,000 rollouts (several MB); Django's 2.5 MB default refuses them.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("PONDER_MAX_BODY_BYTES", 256 * 1024 * 1024, minimum=1024)
# Uploaded files past 1 MB stream to a temporary file, never into the web process's memory;
# the capped handler goes first and stops a file at PONDER_MAX_UPLOAD_MB.
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "webapp.datasets.uploads.CappedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# E-mail (project invitations): SMTP when PONDER_EMAIL_HOST is set, else written to the
# server's console (a development machine, or an operator who shares links by hand).
EMAIL_HOST = os.environ.get("PONDER_EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("PONDER_EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = os.environ.get("PONDER_EMAIL_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("PONDER_EMAIL_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("PONDER_EMAIL_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = os.environ.get("PONDER_EMAIL_FROM", "ponder@localhost")
