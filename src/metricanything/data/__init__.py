"""Data layer: the RGBDSample record, folder format, renderer, sensor simulators, loaders, shards, training sources
and their mixture (sources), the item/batch layout (batch), augmentation."""

from metricanything.data.sample import SENSORS, SOURCE_KINDS, RGBDSample

__all__ = ["RGBDSample", "SOURCE_KINDS", "SENSORS"]
