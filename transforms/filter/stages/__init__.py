"""The filter stages, one module each defining ``STAGE`` (see ``transforms.filter.stage``); the registry
(``transforms.filter.registry``) finds every module of this package."""
