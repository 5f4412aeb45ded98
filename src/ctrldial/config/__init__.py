"""The typed config (``schema``) and how it is layered from defaults, files, ``--set`` and sweep points (``layers``)."""

from ctrldial.config.layers import (
    Layers,
    build_config,
    config_from_flat,
    flat_config,
    flatten,
    load_config_dict,
    parse_override,
    read_yaml_mapping,
    valid_keys,
)
from ctrldial.config.schema import (
    ATTRIBUTES,
    ClassifierConfig,
    Config,
    DataConfig,
    EvalConfig,
    GenerateConfig,
    MethodConfig,
    ModelConfig,
    TrainConfig,
    validate,
)

__all__ = [
    "ATTRIBUTES", "ClassifierConfig", "Config", "DataConfig", "EvalConfig", "GenerateConfig", "Layers", "MethodConfig",
    "ModelConfig", "TrainConfig", "build_config", "config_from_flat", "flat_config", "flatten", "load_config_dict",
    "parse_override", "read_yaml_mapping", "valid_keys", "validate",
]
