"""Settings, all from environment variables.

With no DATABASE_URL the toolkit uses SQLite, and with no REDIS_URL Celery uses a
filesystem broker, so a newcomer needs no servers; CI sets both to real services.
"""
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TOOLKIT_VAR_DIR", BASE_DIR / "var"))


def env_flag(name, default):
    return os.environ.get(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


DEBUG = env_flag("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("Set DJANGO_SECRET_KEY when DJANGO_DEBUG is off.")
    SECRET_KEY = "insecure-development-key-only-for-debug-mode"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "backend.core",
    "backend.projects",
    "backend.datasets",
    "backend.runs",
    "backend.experiments",
    "backend.pipelines",
    "backend.audit",
    "backend.zoo",
    "frontend",
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
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

VAR_DIR.mkdir(parents=True, exist_ok=True)
SQLITE_PATH = VAR_DIR / "db.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{SQLITE_PATH}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The web server, the worker (and its job heartbeat thread) and the test server share one
    # file; waiting for a lock beats failing with "database is locked". Transactions take the
    # write lock when they begin: a transaction that read first and then writes could not wait
    # for it (SQLite answers such an upgrade "locked" at once).
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Everything users bring in, and everything derived from it, lives under here.
STORAGE_ROOT = Path(os.environ.get("TOOLKIT_STORAGE_DIR", VAR_DIR / "storage"))
MEDIA_ROOT = STORAGE_ROOT
# Uploads above this size are streamed to a temporary file, never held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Uploads stream to temporary files beside the storage, so keeping one is a rename, not a copy.
FILE_UPLOAD_TEMP_DIR = str(STORAGE_ROOT / "incoming")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
# A folder of DICOM slices is thousands of files in one request.
DATA_UPLOAD_MAX_NUMBER_FILES = 50_000
DATA_UPLOAD_MAX_NUMBER_FIELDS = 60_000
UPLOAD_MAX_BYTES = int(os.environ.get("TOOLKIT_UPLOAD_MAX_BYTES", 32 * 1024**3))
# Pretrained weight files (ImageNet through torchvision), put here by hand where machines are offline;
# torchvision's own cache (TORCH_HOME) is searched too. Files are checked by the hash in their names.
PRETRAINED_WEIGHTS_DIR = Path(os.environ.get("TOOLKIT_WEIGHTS_DIR", VAR_DIR / "weights"))
# Imported models (ONNX, safetensors): larger files are refused (VGG-16's ONNX is about 530 MB).
MODEL_IMPORT_MAX_BYTES = int(os.environ.get("TOOLKIT_MODEL_IMPORT_MAX_BYTES", 1024**3))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes anonymous calls 401, not 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "backend.core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "backend.core.pagination.Pagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Medical imaging deep-learning toolkit API",
    "DESCRIPTION": "Every action of the toolkit's pages, as a REST call.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "backend.core.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "DatasetStatusEnum": "backend.datasets.models.Dataset.Status",
        "RunStatusEnum": "backend.runs.models.TrainingRun.Status",
        "EvaluationStatusEnum": "backend.runs.models.Evaluation.Status",  # a learning-rate search's words too
        "JobStatusEnum": "backend.core.models.Job.Status",  # the lifecycle's own words (tables of measures, imported models)
        "ImportedModelModeEnum": "backend.zoo.models.ImportedModel.Mode",
        "SampleKindEnum": "backend.datasets.models.Sample.Kind",
        "PipelineKindEnum": "backend.pipelines.models.Pipeline.Kind",
        "ParamKindEnum": "workers.engine.params.PARAM_KINDS",
        "RunGroupKindEnum": "backend.experiments.models.RunGroup.Kind",
    },
}

# Celery: Redis when REDIS_URL is set, otherwise a broker on the local disk.
REDIS_URL = os.environ.get("REDIS_URL", "")
BROKER_DIR = VAR_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # A task still unacknowledged after this long is delivered again (acks are late: a task is
    # acknowledged when it ends, so a killed worker's task is not lost). A job longer than this is
    # delivered again while it runs; the claim (queued -> running) makes that delivery a no-op.
    BROKER_VISIBILITY_SECONDS = int(os.environ.get("TOOLKIT_BROKER_VISIBILITY_SECONDS", "3600"))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": BROKER_VISIBILITY_SECONDS,
        # kombu looks for overdue messages every interval x throttle seconds (100 s by default): keep that
        # well inside the timeout, so a short one (tests use a few seconds) behaves like a long one.
        "unacked_restore_interval": max(1, min(10, BROKER_VISIBILITY_SECONDS // 20)),
        "unacked_restore_throttle": 1,
    }
else:
    for folder in ("queue", "processed", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # kombu's default is ./control, which would litter whatever folder the process runs in.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
# Every queue name starts with this; see backend/core/tasks.py.
QUEUE_PREFIX = os.environ.get("TOOLKIT_QUEUE_PREFIX", "")
CELERY_TASK_DEFAULT_QUEUE = QUEUE_PREFIX + "ingest"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# How often a worker says it is online (three missed beats mark it gone in the resources list)
# and sweeps for jobs whose worker died.
WORKER_HEARTBEAT_SECONDS = float(os.environ.get("TOOLKIT_WORKER_HEARTBEAT_SECONDS", "10"))
# A running job whose worker has said nothing for this long is taken to be dead and is recovered
# (queued again, or failed, as its kind decides: workers/jobs.py). TOOLKIT_INGEST_STALE_SECONDS is its old name.
JOB_STALE_SECONDS = float(os.environ.get("TOOLKIT_JOB_STALE_SECONDS", os.environ.get("TOOLKIT_INGEST_STALE_SECONDS", "180")))
# Processes an ingest reads files with; 0: one per CPU core (uploads under 64 files use one).
INGEST_PROCESSES = int(os.environ.get("TOOLKIT_INGEST_PROCESSES", "0"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Swagger UI's assets come from the installed sidecar package, never from a CDN:
# hospital networks are often offline.
INSTALLED_APPS.append("drf_spectacular_sidecar")
SPECTACULAR_SETTINGS.update({"SWAGGER_UI_DIST": "SIDECAR", "SWAGGER_UI_FAVICON_HREF": "SIDECAR", "REDOC_DIST": "SIDECAR"})
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "frontend.finders.PlotlyFinder",
]

# A cache every process shares: login throttling counts failures across web workers.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": QUEUE_PREFIX or "toolkit"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(VAR_DIR / "cache")}}

# Failed logins allowed per user name and per address before a pause.
LOGIN_FAILURE_LIMIT = int(os.environ.get("TOOLKIT_LOGIN_FAILURE_LIMIT", 5))
LOGIN_FAILURE_WINDOW_SECONDS = 15 * 60
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"login": os.environ.get("TOOLKIT_TOKEN_LOGIN_RATE", "10/min")}

# With debug off, the settings `manage.py check --deploy` asks for.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_flag("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_flag("DJANGO_HSTS_PRELOAD", True)
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    if env_flag("DJANGO_BEHIND_TLS_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
