"""The hub's only settings module: every environment variable is read here, once.

Application code reads ``django.conf.settings``, never ``os.environ`` (DESIGN.md rule 10).
With nothing set, the hub runs on the embedded default: SQLite, kombu's filesystem
transport and a file cache, all under the ``.hub/`` data folder.
"""

import os
import secrets
import sys
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    """A string from NAME, or from the file named by NAME_FILE (Docker secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points at {file_name!r}, which cannot be read: {exc.strerror}.")
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}.") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
DATA_DIR = Path(env_str("HUB_DATA_DIR") or BASE_DIR / ".hub")


def _generated_secret(name: str, make) -> str:
    """In development (DEBUG on) a missing secret is made once and kept under .hub/."""
    path = DATA_DIR / name.lower()
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
        print(f"hub: generated {name} and kept it in {path}", file=sys.stderr)
    return path.read_text().strip()


def _required_secret(name: str, make) -> str:
    value = env_str(name)
    if value:
        return value
    if DEBUG:
        return _generated_secret(name, make)
    raise ImproperlyConfigured(
        f"{name} is not set. Set it in the environment (see .env.example), or set DEBUG=true "
        f"to have one generated under {DATA_DIR} for local use."
    )


SECRET_KEY = _required_secret("SECRET_KEY", lambda: secrets.token_urlsafe(50))
# Credential encryption keys: "id:key,id:key", newest first. Never derived from SECRET_KEY,
# so rotating the session secret cannot destroy stored credentials.
HUB_ENCRYPTION_KEYS = _required_secret("HUB_ENCRYPTION_KEYS", lambda: f"k1:{Fernet.generate_key().decode()}")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
PSA_ALLOW_PRIVATE_HOSTS = env_bool("PSA_ALLOW_PRIVATE_HOSTS", False)
PSA_HTTP_TIMEOUT = env_float("PSA_HTTP_TIMEOUT", 30.0)
# The hub's own ConnectWise integration id (developer.connectwise.com), sent on every call.
CONNECTWISE_CLIENT_ID = env_str("CONNECTWISE_CLIENT_ID")
# Autotask zone discovery; a setting so tests can point it at a fake.
AUTOTASK_ZONE_DISCOVERY_URL = env_str("AUTOTASK_ZONE_DISCOVERY_URL", "https://webservices.autotask.net/atservicesrest/")
HUB_BASE_URL = env_str("HUB_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# The first admin, made by `manage.py bootstrap_admin` (make run) when the hub has no admin yet.
HUB_ADMIN_EMAIL = env_str("HUB_ADMIN_EMAIL", "admin@example.com")
HUB_ADMIN_PASSWORD = env_str("HUB_ADMIN_PASSWORD")
HUB_ADMIN_ACCOUNT = env_str("HUB_ADMIN_ACCOUNT", "My MSP")

# Integration log and connection health (integrations/logs.py, integrations/health.py).
# Entries older than this many days are deleted in batches by a beat task (0 keeps them).
HUB_LOG_RETENTION_DAYS = env_int("HUB_LOG_RETENTION_DAYS", 90)
# A connection with only failures for this long is Broken (its admins are e-mailed once).
HUB_BROKEN_AFTER_HOURS = env_float("HUB_BROKEN_AFTER_HOURS", 24.0)
# This many failures in a row of one kind (tickets, billing, verification) show a banner.
HUB_FAILURE_STREAK = env_int("HUB_FAILURE_STREAK", 5)
# Where the PSA does not say when a credential expires, warn when the keys reach this age
# (0: never); admins are warned this many days ahead, on the page and once by e-mail.
HUB_CREDENTIAL_MAX_AGE_DAYS = env_int("HUB_CREDENTIAL_MAX_AGE_DAYS", 365)
HUB_EXPIRY_WARNING_DAYS = env_int("HUB_EXPIRY_WARNING_DAYS", 14)
# The most rows one CSV export of the logs page returns.
HUB_LOG_EXPORT_MAX_ROWS = env_int("HUB_LOG_EXPORT_MAX_ROWS", 50_000)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "hub",
    "integrations",
    "ticketing",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "hub.tenancy.AccountMiddleware",
    # Last, as django-axes asks, so that it sees the outcome of authentication.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"

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
                "hub.tenancy.account_context",
            ],
        },
    },
]

# Database: DATABASE_URL, or an SQLite file under .hub/.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "hub.sqlite3",
            # A file, not memory, so that a test's Celery worker process sees the test database.
            "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: WAL and IMMEDIATE transactions stop
    # "database is locked" errors when two processes write at once.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis when REDIS_URL is set (broker, cache, shared rate limits); files under .hub/ otherwise.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = REDIS_URL
    # Above the longest task plus the longest retry countdown, or late-acked work runs twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 7200)}
else:
    _broker_dir = DATA_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(DATA_DIR / "cache")}
    }
    CELERY_BROKER_URL = "hubfs://"  # kombu's filesystem transport, writing whole messages (hub/broker.py)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # How long a worker waits before looking for messages again when it found none or its
        # processes were all busy: kombu's 1 s capped the embedded hub at about one task per
        # process per second (bench-tickets: 5.8 tickets/s with 6 processes).
        "polling_interval": 0.1,
    }
    # The filesystem transport has no fan-out exchange for remote control.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_BACKEND = None  # rows are the record of what happened
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Tasks that call a PSA run on the "psa" queue, so a slow PSA never delays the rest.
CELERY_TASK_ROUTES = {
    "integrations.verify_connection": {"queue": "psa"},
    "integrations.check_permissions": {"queue": "psa"},
    "integrations.refresh_picklist": {"queue": "psa"},
    "integrations.import_companies": {"queue": "psa"},
    "ticketing.deliver_incident": {"queue": "psa"},
    "ticketing.refresh_ticket_status": {"queue": "psa"},
    "ticketing.register_status_sync": {"queue": "psa"},
    "ticketing.remove_status_sync": {"queue": "psa"},
    "ticketing.poll_status": {"queue": "psa"},
    "billing.execute_run": {"queue": "psa"},
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Sign-in throttling: five failures for a username from one address lock it for 15 minutes.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_float("AXES_COOLOFF_HOURS", 0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "hub/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "hub" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing folder

SESSION_COOKIE_SECURE = not DEBUG and env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
X_FRAME_OPTIONS = "DENY"

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "PSA hub <hub@localhost>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hub.api.ApiKeyAuthentication",
        "hub.api.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["hub.api.AccountRolePermission"],
    "DEFAULT_PAGINATION_CLASS": "hub.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hub.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "PSA integration hub API",
    "DESCRIPTION": "Tenants, incidents and usage in; PSA tickets and billing out. Authenticate with "
    "`Authorization: Bearer <API key>` (Settings → API keys).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files: the hub needs no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "IncidentStatusEnum": "ticketing.models.STATUSES",
        "SeverityEnum": "ticketing.models.SEVERITIES",
        "ConnectionStatusEnum": "integrations.models.Connection.Status",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
