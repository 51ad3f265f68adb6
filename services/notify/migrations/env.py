from sqlmodel import SQLModel

import services.notify.models  # noqa: F401  (registers the notify_* tables)
from shared.migrations_env import run

run(SQLModel.metadata, "notify")
