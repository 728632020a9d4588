"""The feature stage: incremental `FeatureBuffer` and its vectorised twin `features_frame`."""

from simulator.features.batch import features_frame, incremental_features
from simulator.features.buffer import BookColumns, FeatureBuffer
from simulator.features.config import FeatureConfig, feature_names, warmup
from simulator.features.events import event_table, session_events

__all__ = [
    "BookColumns",
    "FeatureBuffer",
    "FeatureConfig",
    "event_table",
    "feature_names",
    "features_frame",
    "incremental_features",
    "session_events",
    "warmup",
]
