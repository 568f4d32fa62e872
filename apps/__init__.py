"""Feature apps (FlowApp / PacketApp, see apps.base). The list the controller runs: apps.registry."""


def default_apps() -> list:
    """Instances of every registered app (see apps.registry.APPS)."""
    from apps.registry import default_apps as _default_apps
    return _default_apps()
