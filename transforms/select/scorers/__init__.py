"""The scorers, one module each defining ``SCORER`` (see ``transforms.select.scorer``); the registry
(``transforms.select.registry``) finds every module of this package."""
