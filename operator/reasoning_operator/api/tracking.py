"""`spec.tracking`: where training and evaluation metrics go beside the run's volume (TensorBoard event files
are always written there). Secrets only by reference: the pods read them from the environment."""

from __future__ import annotations

from pydantic import Field

from .base import ApiModel, section_config
from .validation import SubdomainName

#: The environment variables the MLflow client reads; each comes from the same-named key of the credentials
#: Secret (optional keys: a token alone, or a username and password).
MLFLOW_CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


class MlflowSpec(ApiModel):
    url: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^https?://\S+$",
        description="The MLflow tracking server, e.g. http://mlflow.mlops:5000.",
    )
    experiment: str = Field(
        default="reasoning-runs", min_length=1, max_length=253, description="Experiment the run is logged under."
    )
    credentials_secret: SubdomainName | None = Field(
        default=None,
        description=(
            "Secret in the run's namespace; its keys MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD, become the training and evaluation pods' environment."
        ),
    )


class TrackingSpec(ApiModel):
    model_config = section_config("spec.tracking")

    mlflow: MlflowSpec | None = Field(
        default=None, description="Log training and evaluation metrics to this MLflow server too."
    )
