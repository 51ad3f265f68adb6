from sqlmodel import SQLModel

import services.escalation.models  # noqa: F401  (registers the escalation_* tables)
from shared.migrations_env import run

run(SQLModel.metadata, "escalation")
