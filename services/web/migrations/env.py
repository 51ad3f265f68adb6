from sqlmodel import SQLModel

import services.web.models  # noqa: F401  (registers the web_* tables)
from shared.migrations_env import run

run(SQLModel.metadata, "web")
